//! Formats of the primitive data types that have one: NM, SI, DT, TM, DTM and TS.
//!
//! Each check takes the decoded text of one value and returns why it is not valid. The
//! reasons never quote the value (it may be PHI). Other primitives (ST, TX, FT, ID, IS, ...)
//! have no format beyond their tables and lengths, so they are not checked here.

/// Checks `text` against the primitive `data_type`; `Ok` for types without a format.
pub fn check(data_type: &str, text: &str) -> Result<(), &'static str> {
    match data_type {
        "NM" => number(text),
        "SI" => sequence_id(text),
        "DT" => date(text),
        "TM" => time(text),
        "DTM" | "TS" => date_time(text),
        _ => Ok(()),
    }
}

/// True for the types [`check`] knows a format for.
pub fn has_format(data_type: &str) -> bool {
    matches!(data_type, "NM" | "SI" | "DT" | "TM" | "DTM" | "TS")
}

/// The format each checked type expects, for finding texts.
pub fn format_hint(data_type: &str) -> &'static str {
    match data_type {
        "NM" => "an optionally signed decimal number",
        "SI" => "a non-negative integer",
        "DT" => "YYYY[MM[DD]]",
        "TM" => "HH[MM[SS[.S[S[S[S]]]]]][+/-ZZZZ]",
        "DTM" | "TS" => "YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]",
        _ => "",
    }
}

fn number(t: &str) -> Result<(), &'static str> {
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !frac.is_none_or(digits) {
        return Err("not a decimal number");
    }
    if int.is_empty() && frac.is_none_or(str::is_empty) {
        return Err("no digits");
    }
    Ok(())
}

fn sequence_id(t: &str) -> Result<(), &'static str> {
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err("not a non-negative integer")
    }
}

fn two(b: &[u8]) -> u32 {
    u32::from(b[0] - b'0') * 10 + u32::from(b[1] - b'0')
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY[MM[DD]]` digits, already known to be ASCII digits of length 4, 6 or 8.
fn date_digits(d: &[u8]) -> Result<(), &'static str> {
    let year = two(&d[0..2]) * 100 + two(&d[2..4]);
    if d.len() >= 6 {
        let month = two(&d[4..6]);
        if !(1..=12).contains(&month) {
            return Err("month out of range");
        }
        if d.len() == 8 {
            let day = two(&d[6..8]);
            if day == 0 || day > days_in_month(year, month) {
                return Err("day out of range");
            }
        }
    }
    Ok(())
}

fn date(t: &str) -> Result<(), &'static str> {
    let b = t.as_bytes();
    if !matches!(b.len(), 4 | 6 | 8) || !b.iter().all(u8::is_ascii_digit) {
        return Err("not of the form YYYY[MM[DD]]");
    }
    date_digits(b)
}

/// Splits a trailing `+ZZZZ`/`-ZZZZ` offset and checks it.
fn split_offset(t: &str) -> Result<&str, &'static str> {
    match t.find(['+', '-']) {
        None => Ok(t),
        Some(at) => {
            let z = &t.as_bytes()[at + 1..];
            if z.len() != 4 || !z.iter().all(u8::is_ascii_digit) {
                return Err("time zone offset is not +/-ZZZZ");
            }
            if two(&z[0..2]) > 23 || two(&z[2..4]) > 59 {
                return Err("time zone offset out of range");
            }
            Ok(&t[..at])
        }
    }
}

/// `HH[MM[SS[.S[S[S[S]]]]]]` without offset.
fn time_digits(t: &str) -> Result<(), &'static str> {
    let (main, frac) = match t.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (t, None),
    };
    let b = main.as_bytes();
    if !matches!(b.len(), 2 | 4 | 6) || !b.iter().all(u8::is_ascii_digit) {
        return Err("time is not HH[MM[SS]]");
    }
    if let Some(f) = frac {
        if b.len() != 6 {
            return Err("fraction of a second without seconds");
        }
        if f.is_empty() || f.len() > 4 || !f.bytes().all(|c| c.is_ascii_digit()) {
            return Err("fraction of a second is not 1 to 4 digits");
        }
    }
    if two(&b[0..2]) > 23 {
        return Err("hour out of range");
    }
    if b.len() >= 4 && two(&b[2..4]) > 59 {
        return Err("minute out of range");
    }
    if b.len() == 6 && two(&b[4..6]) > 59 {
        return Err("second out of range");
    }
    Ok(())
}

fn time(t: &str) -> Result<(), &'static str> {
    time_digits(split_offset(t)?)
}

fn date_time(t: &str) -> Result<(), &'static str> {
    let main = match split_offset(t) {
        Ok(m) => m,
        // A sign inside the date ("2024-01-02") is a malformed date, not a bad offset.
        Err(_) if t.find(['+', '-']).is_some_and(|at| at < 8) => {
            return Err("date part is not YYYY[MM[DD]]");
        }
        Err(e) => return Err(e),
    };
    let date_len = main.bytes().take_while(u8::is_ascii_digit).count().min(8);
    if date_len < 4 {
        return Err("no 4-digit year");
    }
    let (d, rest) = main.split_at(date_len);
    if !matches!(d.len(), 4 | 6 | 8) {
        return Err("date part is not YYYY[MM[DD]]");
    }
    date_digits(d.as_bytes())?;
    if rest.is_empty() {
        return Ok(());
    }
    if d.len() != 8 {
        return Err("time given without a full date");
    }
    time_digits(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_of_formats() {
        let cases: &[(&str, &str, Result<(), &str>)] = &[
            ("NM", "12", Ok(())),
            ("NM", "-0.5", Ok(())),
            ("NM", "+.5", Ok(())),
            ("NM", "7.", Ok(())),
            ("NM", ".", Err("no digits")),
            ("NM", "1,5", Err("not a decimal number")),
            ("NM", "<5", Err("not a decimal number")),
            ("NM", " 5", Err("not a decimal number")),
            ("SI", "0", Ok(())),
            ("SI", "-1", Err("not a non-negative integer")),
            ("DT", "2024", Ok(())),
            ("DT", "202402", Ok(())),
            ("DT", "20240229", Ok(())),
            ("DT", "20230229", Err("day out of range")),
            ("DT", "20241301", Err("month out of range")),
            ("DT", "2024-01-01", Err("not of the form YYYY[MM[DD]]")),
            ("TM", "1230", Ok(())),
            ("TM", "123045.1234-0500", Ok(())),
            ("TM", "2460", Err("hour out of range")),
            ("TM", "1260", Err("minute out of range")),
            ("TM", "12.5", Err("fraction of a second without seconds")),
            ("TM", "1230+05", Err("time zone offset is not +/-ZZZZ")),
            ("DTM", "2024", Ok(())),
            ("DTM", "20240102", Ok(())),
            ("DTM", "2024010203", Ok(())),
            ("DTM", "202401020304", Ok(())),
            ("DTM", "20240102030405.1234+0100", Ok(())),
            ("DTM", "20240102-0500", Ok(())),
            (
                "TS",
                "20240102030405.12345",
                Err("fraction of a second is not 1 to 4 digits"),
            ),
            ("DTM", "202401021", Err("time is not HH[MM[SS]]")),
            ("DTM", "20240132", Err("day out of range")),
            ("DTM", "2024010225", Err("hour out of range")),
            ("DTM", "12", Err("no 4-digit year")),
            ("DTM", "20240102 1200", Err("time is not HH[MM[SS]]")),
            ("DTM", "20240102+2400", Err("time zone offset out of range")),
            ("DTM", "2024-01-02", Err("date part is not YYYY[MM[DD]]")),
            ("DTM", "2024+0100", Ok(())),
            ("DTM", "20240102+01", Err("time zone offset is not +/-ZZZZ")),
            ("ST", "anything", Ok(())),
        ];
        for (dt, text, want) in cases {
            assert_eq!(check(dt, text), *want, "{dt} {text:?}");
        }
    }
}
