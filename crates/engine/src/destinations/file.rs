//! The file destination: each message written to its own file, atomically.
//!
//! The file is written under a temporary name, flushed to disk, then renamed, and the
//! directory is flushed: a reader never sees half a message and a crash never leaves one.

use std::path::PathBuf;

use causeway_store::{Delivery, Header};

use super::Attempt;
use crate::config::{FilenameTemplate, FilenameVars};

/// Writes messages as files in `dir`.
#[derive(Debug, Clone)]
pub struct FileSender {
    pub dir: PathBuf,
    pub filename: FilenameTemplate,
}

impl FileSender {
    pub async fn deliver(
        &mut self,
        payload: &[u8],
        header: &Header,
        delivery: &Delivery,
    ) -> Attempt {
        let destination = delivery
            .destination
            .rsplit('/')
            .next()
            .unwrap_or(&delivery.destination);
        let name = self.filename.render(&FilenameVars {
            channel: &delivery.channel,
            destination,
            id: delivery.message_id.0,
            control_id: &header.control_id,
            message_type: &header.message_type,
        });
        let dir = self.dir.clone();
        let payload = payload.to_vec();
        let result =
            tokio::task::spawn_blocking(move || write_atomically(&dir, &name, &payload)).await;
        match result {
            Ok(Ok(())) => Attempt::Delivered { ack: None },
            Ok(Err(e)) => Attempt::Retry {
                error: format!("writing file: {e}"),
                ack: None,
            },
            Err(e) => Attempt::Retry {
                error: format!("writing file: {e}"),
                ack: None,
            },
        }
    }
}

fn write_atomically(dir: &std::path::Path, name: &str, payload: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(payload)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}
