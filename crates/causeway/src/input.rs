//! Reading HL7 files for the CLI: `-` is stdin; errors name the file, the message number,
//! the line, the segment, the field and the byte offset in the file.

use std::io::Read;

use anyhow::Context;

/// A whole input file in memory.
pub struct Input {
    pub name: String,
    pub data: Vec<u8>,
}

impl Input {
    pub fn read(path: &str) -> anyhow::Result<Input> {
        let data = if path == "-" {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("cannot read standard input")?;
            buf
        } else {
            std::fs::read(path).with_context(|| format!("cannot read {path}"))?
        };
        let name = if path == "-" {
            "<stdin>".to_string()
        } else {
            path.to_string()
        };
        Ok(Input { name, data })
    }

    /// [`Input::read`] for a file of HL7 v2 messages: one that holds none (empty, or only blank
    /// lines: a wrong export, a truncated copy) is an error rather than a silent success.
    pub fn read_hl7(path: &str) -> anyhow::Result<Input> {
        let input = Input::read(path)?;
        if hl7v2::split_file(&input.data).next().is_none() {
            anyhow::bail!(
                "{}: no HL7 v2 message in it (the file is empty or holds only blank lines)",
                input.name
            );
        }
        Ok(input)
    }

    /// Each message of the file, parsed, or the error that stopped it.
    pub fn messages(
        &self,
    ) -> impl Iterator<Item = Result<(hl7v2::RawMessage<'_>, hl7v2::Message<'_>), String>> + '_
    {
        hl7v2::split_file(&self.data).map(move |item| match item {
            Err(e) => Err(self.describe(0, &e)),
            Ok(raw) => {
                let offset = raw.offset;
                hl7v2::parse(raw.bytes).map(|m| (raw, m)).map_err(|mut e| {
                    e.position.byte += offset;
                    self.describe(raw.number, &e)
                })
            }
        })
    }

    /// `FILE: message N, line L: <error with file-relative byte offset>`.
    pub fn describe(&self, number: usize, e: &hl7v2::Error) -> String {
        let line = hl7v2::batch::line_of(&self.data, e.position.byte);
        if number == 0 {
            format!("{}: line {line}: {e}", self.name)
        } else {
            format!("{}: message {number}, line {line}: {e}", self.name)
        }
    }
}
