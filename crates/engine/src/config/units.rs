//! Values written as text in `causeway.toml`: durations (`"500ms"`, `"30d"`), sizes
//! (`"16MiB"`), network addresses (`"host:port"`) and names.
//!
//! Each parser returns the reason as lowercase text; the caller adds the key path and the
//! position. None of them touches the network: a host name is checked for shape only, and
//! resolved by whoever connects, so `causeway check` gives the same answer on any machine.

use std::time::Duration;

/// Longest channel, destination or code-table name.
///
/// Names appear in URLs, metric labels, file names and the store's indexed columns; 64
/// characters is plenty for a readable name and far below the store's 1 KiB field limit.
pub const MAX_NAME_LEN: usize = 64;

/// Parses `"500ms"`, `"2s"`, `"5m"`, `"1h"`, `"30d"`: a whole number and one unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration {text:?}: expected a whole number and a unit (ms, s, m, h, d), e.g. \"30s\""
        )
    };
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad());
    }
    let (number, unit) = text.split_at(digits);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("invalid duration {text:?}: too large"))
}

/// Formats a duration the way [`parse_duration`] reads it, with the largest exact unit.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms != 0 && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Parses `"512B"`, `"512KiB"`, `"16MiB"`, `"1GiB"`: a whole number and a binary unit.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let bad = || {
        format!(
            "invalid size {text:?}: expected a whole number and a unit (B, KiB, MiB, GiB), e.g. \"16MiB\""
        )
    };
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad());
    }
    let (number, unit) = text.split_at(digits);
    let n: usize = number.parse().map_err(|_| bad())?;
    let shift = match unit {
        "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        _ => return Err(bad()),
    };
    n.checked_mul(1usize << shift)
        .ok_or_else(|| format!("invalid size {text:?}: too large"))
}

/// Formats a size the way [`parse_size`] reads it, with the largest exact unit.
pub fn format_size(n: usize) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        let size = 1usize << shift;
        if n != 0 && n.is_multiple_of(size) {
            return format!("{}{unit}", n / size);
        }
    }
    format!("{n}B")
}

/// Checks `host:port` without resolving anything: the host is an IPv4 address, a bracketed
/// IPv6 address or a DNS name; the port is 0 to 65535 (0 only when `allow_port_zero`).
/// Returns the host (without brackets) and the port.
pub fn parse_address(text: &str, allow_port_zero: bool) -> Result<(String, u16), String> {
    let bad = |why: &str| format!("invalid address {text:?}: {why}");
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or_else(|| bad("unclosed '[' around an ipv6 address"))?;
        ip.parse::<std::net::Ipv6Addr>()
            .map_err(|_| bad("invalid ipv6 address"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| bad("expected host:port"))?;
        (ip, port)
    } else {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| bad("expected host:port"))?;
        if host.contains(':') {
            return Err(bad(
                "write an ipv6 address in brackets, e.g. \"[::1]:2575\"",
            ));
        }
        if host.is_empty() {
            return Err(bad("missing host before the port"));
        }
        if !is_host_name(host) {
            return Err(bad("invalid host name"));
        }
        (host, port)
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.len() > 5 {
        return Err(bad("the port must be a number from 1 to 65535"));
    }
    let port: u32 = port
        .parse()
        .map_err(|_| bad("the port must be a number from 1 to 65535"))?;
    if port > 65535 || (port == 0 && !allow_port_zero) {
        return Err(bad("the port must be a number from 1 to 65535"));
    }
    Ok((host.to_string(), port as u16))
}

/// A DNS name or an IPv4 address: labels of letters, digits, `-` and `_`, at most 253 bytes.
fn is_host_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Channel, destination and table names: 1 to [`MAX_NAME_LEN`] ASCII letters, digits, `-`,
/// `_` or `.`, not starting with `.` (they become file names and URL segments).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".to_string());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("the name is longer than {MAX_NAME_LEN} characters"));
    }
    if name.starts_with('.')
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "invalid name {name:?}: use letters, digits, '-', '_' and '.' (not first)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (text, ms) in [
            ("500ms", 500),
            ("2s", 2_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("30d", 2_592_000_000),
            ("0s", 0),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
        for text in ["", "5", "s", "1.5s", "5 s", "-1s", "5x", "1sec", " 5s"] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
        assert_eq!(
            parse_duration("99999999999999999999d").unwrap_err(),
            "invalid duration \"99999999999999999999d\": expected a whole number and a unit (ms, s, m, h, d), e.g. \"30s\""
        );
        assert_eq!(
            parse_duration("999999999999999999d").unwrap_err(),
            "invalid duration \"999999999999999999d\": too large"
        );
        for ms in [0, 1, 1_500, 2_000, 300_000, 7_200_000, 86_400_000] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    #[test]
    fn sizes() {
        for (text, n) in [
            ("0B", 0),
            ("100B", 100),
            ("512KiB", 512 * 1024),
            ("16MiB", 16 << 20),
            ("1GiB", 1 << 30),
        ] {
            assert_eq!(parse_size(text), Ok(n), "{text}");
        }
        for text in ["", "16", "16MB", "16mib", "1.5MiB", "MiB", "16 MiB"] {
            assert!(parse_size(text).is_err(), "{text}");
        }
        for n in [0, 7, 1024, 3 << 20, 1 << 30] {
            assert_eq!(parse_size(&format_size(n)), Ok(n));
        }
    }

    #[test]
    fn addresses() {
        for (text, host, port) in [
            ("0.0.0.0:2575", "0.0.0.0", 2575),
            ("lab.example.org:2575", "lab.example.org", 2575),
            ("localhost:1", "localhost", 1),
            ("[::1]:8080", "::1", 8080),
            ("[::]:65535", "::", 65535),
        ] {
            assert_eq!(
                parse_address(text, false),
                Ok((host.to_string(), port)),
                "{text}"
            );
        }
        for (text, why) in [
            ("2575", "expected host:port"),
            (":2575", "missing host before the port"),
            ("host:", "the port must be a number from 1 to 65535"),
            ("host:65536", "the port must be a number from 1 to 65535"),
            ("host:0", "the port must be a number from 1 to 65535"),
            ("host:x", "the port must be a number from 1 to 65535"),
            (
                "::1:80",
                "write an ipv6 address in brackets, e.g. \"[::1]:2575\"",
            ),
            ("[::1:80", "unclosed '[' around an ipv6 address"),
            ("[zz]:80", "invalid ipv6 address"),
            ("a b:80", "invalid host name"),
            ("a..b:80", "invalid host name"),
        ] {
            assert_eq!(
                parse_address(text, false),
                Err(format!("invalid address {text:?}: {why}")),
                "{text}"
            );
        }
        assert_eq!(
            parse_address("127.0.0.1:0", true),
            Ok(("127.0.0.1".into(), 0))
        );
    }

    #[test]
    fn names() {
        assert!(check_name("adt-main_2.x").is_ok());
        assert_eq!(check_name("").unwrap_err(), "the name is empty");
        assert_eq!(
            check_name("a/b").unwrap_err(),
            "invalid name \"a/b\": use letters, digits, '-', '_' and '.' (not first)"
        );
        assert!(check_name(".hidden").is_err());
        assert!(check_name(&"x".repeat(MAX_NAME_LEN)).is_ok());
        assert_eq!(
            check_name(&"x".repeat(MAX_NAME_LEN + 1)).unwrap_err(),
            "the name is longer than 64 characters"
        );
    }
}
