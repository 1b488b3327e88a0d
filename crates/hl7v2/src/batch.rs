//! Files and batches: splitting a buffer into messages with their byte offsets.
//!
//! A file may hold one message, many messages back to back (with or without blank lines
//! between them), or a batch: `FHS` / `BHS` headers, messages, `BTS` / `FTS` trailers. Files
//! written by hand or by other tools also carry comment lines (`//`, `#`, `/* ... */`).
//!
//! Rules, line by line (a line ends at CR, LF or CRLF):
//! - an `MSH` line starts a message; the message runs to the line before the next `MSH`,
//!   `FHS`, `BHS`, `BTS` or `FTS` line, comment line, or the end of the file;
//! - blank lines inside a message stay in it (some senders double their terminators), but
//!   blank lines after its last segment are not part of it;
//! - envelope lines (`FHS`, `BHS`, `BTS`, `FTS`) are collected, not returned as messages; a
//!   `BTS-1` count that disagrees with the messages seen is reported as a warning;
//! - any other line outside a message is an error item (with its offset and line), and the
//!   reader carries on with the next message: one broken message never hides the rest.

use crate::error::{Error, ErrorKind, Position};

/// One message found in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawMessage<'a> {
    /// 1-based number of the message in the file.
    pub number: usize,
    /// Byte offset of `MSH` in the file.
    pub offset: usize,
    /// 1-based line of `MSH` in the file.
    pub line: usize,
    /// The message, from `MSH` through the terminator of its last segment.
    pub bytes: &'a [u8],
}

/// An envelope segment (`FHS`, `BHS`, `BTS`, `FTS`) seen in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeSegment<'a> {
    pub offset: usize,
    pub line: usize,
    pub bytes: &'a [u8],
}

/// Splits a file into messages; an iterator of `Result<RawMessage, Error>`.
#[derive(Debug, Clone)]
pub struct FileReader<'a> {
    data: &'a [u8],
    pos: usize,
    line: usize,
    messages: usize,
    in_block_comment: bool,
    envelope: Vec<EnvelopeSegment<'a>>,
    warnings: Vec<String>,
    messages_since_bhs: usize,
}

/// Splits `data` (a whole file) into messages.
pub fn split_file(data: &[u8]) -> FileReader<'_> {
    let pos = if data.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    FileReader {
        data,
        pos,
        line: 1,
        messages: 0,
        in_block_comment: false,
        envelope: Vec::new(),
        warnings: Vec::new(),
        messages_since_bhs: 0,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineKind {
    Blank,
    Comment,
    MessageStart,
    Envelope,
    Other,
}

/// One line: content range and where the next line starts.
#[derive(Debug, Clone, Copy)]
struct Line {
    start: usize,
    end: usize,
    next: usize,
}

impl<'a> FileReader<'a> {
    /// Envelope segments seen so far (complete after the iterator is exhausted).
    pub fn envelope(&self) -> &[EnvelopeSegment<'a>] {
        &self.envelope
    }

    /// Things that are odd but not errors, e.g. a batch count that does not match.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn line_at(&self, start: usize) -> Line {
        let data = self.data;
        let end = memchr::memchr2(b'\r', b'\n', &data[start..]).map_or(data.len(), |n| start + n);
        let next = if end < data.len() && data[end] == b'\r' && data.get(end + 1) == Some(&b'\n') {
            end + 2
        } else if end < data.len() {
            end + 1
        } else {
            end
        };
        Line { start, end, next }
    }

    fn classify(&mut self, line: Line) -> LineKind {
        let text = &self.data[line.start..line.end];
        if self.in_block_comment {
            if memchr::memmem::find(text, b"*/").is_some() {
                self.in_block_comment = false;
            }
            return LineKind::Comment;
        }
        let trimmed = text.trim_ascii();
        if trimmed.is_empty() {
            return LineKind::Blank;
        }
        if trimmed.starts_with(b"/*") {
            if memchr::memmem::find(&trimmed[2..], b"*/").is_none() {
                self.in_block_comment = true;
            }
            return LineKind::Comment;
        }
        if trimmed.starts_with(b"//") || trimmed.starts_with(b"#") {
            return LineKind::Comment;
        }
        if text.starts_with(b"MSH") && text.len() > 3 {
            return LineKind::MessageStart;
        }
        let id = &text[..text.len().min(3)];
        if matches!(id, b"FHS" | b"BHS" | b"BTS" | b"FTS") {
            return LineKind::Envelope;
        }
        LineKind::Other
    }

    fn advance(&mut self, line: Line) {
        self.pos = line.next;
        self.line += 1;
    }

    fn record_envelope(&mut self, line: Line) {
        let bytes = &self.data[line.start..line.end];
        match &bytes[..3] {
            b"BHS" => self.messages_since_bhs = 0,
            b"BTS" => {
                let count = bytes.get(4..).and_then(|rest| {
                    let sep = bytes[3];
                    let first = rest.split(|&b| b == sep).next()?;
                    std::str::from_utf8(first)
                        .ok()?
                        .trim()
                        .parse::<usize>()
                        .ok()
                });
                if let Some(n) = count.filter(|&n| n != self.messages_since_bhs) {
                    self.warnings.push(format!(
                        "BTS-1 says {n} messages but the batch holds {} (line {})",
                        self.messages_since_bhs, self.line
                    ));
                }
            }
            _ => {}
        }
        self.envelope.push(EnvelopeSegment {
            offset: line.start,
            line: self.line,
            bytes,
        });
    }
}

impl<'a> Iterator for FileReader<'a> {
    type Item = Result<RawMessage<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        // Skip to the next message start, reporting stray lines as one error.
        let mut stray: Option<(usize, usize)> = None; // (offset, end of its first line)
        loop {
            if self.pos >= self.data.len() {
                return stray.map(|s| Err(self.stray_error(s)));
            }
            let line = self.line_at(self.pos);
            match self.classify(line) {
                LineKind::MessageStart => {
                    if let Some(s) = stray {
                        // Report the stray lines now; the message is read on the next call.
                        return Some(Err(self.stray_error(s)));
                    }
                    break;
                }
                LineKind::Envelope => {
                    if let Some(s) = stray.take() {
                        return Some(Err(self.stray_error(s)));
                    }
                    self.record_envelope(line);
                }
                LineKind::Other => {
                    stray.get_or_insert((line.start, line.end));
                }
                LineKind::Blank | LineKind::Comment => {}
            }
            self.advance(line);
        }
        // Read the message.
        let start = self.pos;
        let first_line = self.line;
        let mut end = self.line_at(start).next;
        self.advance(self.line_at(start));
        while self.pos < self.data.len() {
            let line = self.line_at(self.pos);
            match self.classify(line) {
                LineKind::Other => {
                    end = line.next;
                    self.advance(line);
                }
                LineKind::Blank => self.advance(line),
                LineKind::MessageStart | LineKind::Envelope => break,
                LineKind::Comment => {
                    // A comment ends the message; leave it for the next call to skip.
                    self.in_block_comment = false;
                    break;
                }
            }
        }
        self.messages += 1;
        self.messages_since_bhs += 1;
        Some(Ok(RawMessage {
            number: self.messages,
            offset: start,
            line: first_line,
            bytes: &self.data[start..end],
        }))
    }
}

impl FileReader<'_> {
    fn stray_error(&self, (offset, line_end): (usize, usize)) -> Error {
        let found =
            String::from_utf8_lossy(&self.data[offset..line_end.min(offset + 3)]).into_owned();
        Error::new(ErrorKind::MissingMsh { found }, Position::at_byte(offset))
    }
}

/// The 1-based line number of a byte offset (CR, LF and CRLF each end one line).
pub fn line_of(data: &[u8], offset: usize) -> usize {
    let upto = &data[..offset.min(data.len())];
    let mut lines = 1;
    let mut i = 0;
    while let Some(n) = memchr::memchr2(b'\r', b'\n', &upto[i..]) {
        let at = i + n;
        lines += 1;
        i = if upto[at] == b'\r' && upto.get(at + 1) == Some(&b'\n') {
            at + 2
        } else {
            at + 1
        };
        if i >= upto.len() {
            break;
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(data: &[u8]) -> Vec<Result<(usize, usize, String), String>> {
        split_file(data)
            .map(|r| {
                r.map(|m| {
                    (
                        m.offset,
                        m.line,
                        String::from_utf8_lossy(m.bytes).into_owned(),
                    )
                })
                .map_err(|e| e.to_string())
            })
            .collect()
    }

    #[test]
    fn back_to_back_and_blank_separated() {
        let got = split(b"MSH|^~\\&|A\rPID|1\rMSH|^~\\&|B\r\rMSH|^~\\&|C\n");
        assert_eq!(
            got,
            vec![
                Ok((0, 1, "MSH|^~\\&|A\rPID|1\r".into())),
                Ok((17, 3, "MSH|^~\\&|B\r".into())),
                Ok((29, 5, "MSH|^~\\&|C\n".into())),
            ]
        );
    }

    #[test]
    fn comments_batches_and_strays() {
        let data = b"/* head\n more */\nFHS|^~\\&\nBHS|^~\\&\n// one\nMSH|^~\\&|A\nPID|1\n\nBTS|2\nFTS|1\nPID|2\nMSH|^~\\&|B\n";
        let mut reader = split_file(data);
        let items: Vec<_> = reader
            .by_ref()
            .map(|r| r.map(|m| m.line).map_err(|e| e.to_string()))
            .collect();
        assert_eq!(
            items,
            vec![
                Ok(6),
                Err("message does not start with MSH (found \"PID\") at byte 72".into()),
                Ok(12)
            ]
        );
        assert_eq!(reader.envelope().len(), 4);
        assert_eq!(
            reader.warnings(),
            ["BTS-1 says 2 messages but the batch holds 1 (line 9)"]
        );
    }

    #[test]
    fn blank_lines_inside_a_message_stay() {
        let got = split(b"MSH|^~\\&|A\r\n\r\nPID|1\r\n\r\n");
        assert_eq!(got, vec![Ok((0, 1, "MSH|^~\\&|A\r\n\r\nPID|1\r\n".into()))]);
    }

    #[test]
    fn lines_count_crlf_once() {
        assert_eq!(line_of(b"a\r\nb\rc\nd", 7), 4);
        assert_eq!(line_of(b"abc", 2), 1);
    }
}
