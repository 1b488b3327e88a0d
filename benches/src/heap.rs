//! The heap probe's report: one tab-separated line per row.
//!
//! Line format: `heap <id> <messages> <tree_bytes> <allocs> <status>`, where
//! `tree_bytes` is the sum over messages of the heap bytes the parsed message
//! still held right after parsing (requested sizes: allocated minus freed,
//! reallocations included), `allocs` the sum of allocations and reallocations
//! over the whole run (parse, walk and read), and `status` is `ok` or the
//! first error, with tabs and newlines replaced by spaces.

/// Heap figures for one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeapLine {
    /// The row's [`crate::cases::Case::id`].
    pub id: String,
    /// Messages measured.
    pub messages: u64,
    /// Sum of live heap bytes after parse, over all messages.
    pub tree_bytes: u64,
    /// Sum of allocations (and reallocations) per run, over all messages.
    pub allocs: u64,
    /// `ok`, or why the row could not be measured.
    pub status: String,
}

impl HeapLine {
    /// The line as the probe prints it.
    pub fn render(&self) -> String {
        let status: String = self
            .status
            .chars()
            .map(|c| {
                if c == '\t' || c == '\n' || c == '\r' {
                    ' '
                } else {
                    c
                }
            })
            .collect();
        format!(
            "heap\t{}\t{}\t{}\t{}\t{}",
            self.id, self.messages, self.tree_bytes, self.allocs, status
        )
    }

    /// Reads a line back; other lines give `None`.
    pub fn parse(line: &str) -> Option<HeapLine> {
        let mut parts = line.splitn(6, '\t');
        if parts.next()? != "heap" {
            return None;
        }
        Some(HeapLine {
            id: parts.next()?.to_string(),
            messages: parts.next()?.parse().ok()?,
            tree_bytes: parts.next()?.parse().ok()?,
            allocs: parts.next()?.parse().ok()?,
            status: parts.next()?.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_status_stays_on_one_line() {
        let line = HeapLine {
            id: "er7".into(),
            messages: 3,
            tree_bytes: 1234,
            allocs: 56,
            status: "bad\theader\nhere".into(),
        };
        let text = line.render();
        assert!(!text.contains('\n'));
        let back = HeapLine::parse(&text).unwrap();
        assert_eq!(back.status, "bad header here");
        assert_eq!((back.messages, back.tree_bytes, back.allocs), (3, 1234, 56));
        assert_eq!(HeapLine::parse("something else"), None);
    }
}
