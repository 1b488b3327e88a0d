//! The codec over a real TCP socket pair on 127.0.0.1 (needs the `tokio` feature).

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use mllp::Codec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Framed, FramedRead};

async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (client.unwrap(), accepted.unwrap().0)
}

#[tokio::test]
async fn frames_split_across_writes_arrive_whole_and_get_answers() {
    let (client, server) = pair().await;
    let (client_read, mut client_write) = client.into_split();

    let sender = tokio::spawn(async move {
        // Garbage first, then three frames cut at awkward places, the last without its CR.
        let wire: &[&[u8]] = &[
            b"noise\r\n\x0bMSH|^~\\&|1",
            b"\rPID|1\x1c",
            b"\x0d\x0bMSH|^~\\&|2\x1c\x0d\x0b",
            b"MSH|^~\\&|3",
            b"\x1c",
        ];
        for piece in wire {
            client_write.write_all(piece).await.unwrap();
            client_write.flush().await.unwrap();
        }
        client_write
    });

    let mut server = Framed::new(server, Codec::new());
    let mut received = Vec::new();
    for _ in 0..3 {
        let payload = server.next().await.unwrap().unwrap();
        received.push(payload.clone());
        let mut ack = b"MSA|AA|".to_vec();
        ack.extend_from_slice(&payload[payload.len() - 1..]);
        server.send(Bytes::from(ack)).await.unwrap();
    }
    assert_eq!(
        received,
        [&b"MSH|^~\\&|1\rPID|1"[..], b"MSH|^~\\&|2", b"MSH|^~\\&|3"]
    );
    assert_eq!(server.codec().decoder().skipped_bytes(), 5);

    let mut acks = FramedRead::new(client_read, Codec::new());
    for n in [b'1', b'2', b'3'] {
        let ack = acks.next().await.unwrap().unwrap();
        assert_eq!(
            ack,
            Bytes::from(vec![b'M', b'S', b'A', b'|', b'A', b'A', b'|', n])
        );
    }

    // The client closes cleanly between frames: the server's stream ends without an error.
    let mut client_write = sender.await.unwrap();
    client_write.shutdown().await.unwrap();
    assert!(server.next().await.is_none());
}

#[tokio::test]
async fn oversized_frame_is_refused_without_waiting_for_its_end() {
    let (mut client, server) = pair().await;
    let sender = tokio::spawn(async move {
        // A frame that never ends: VT and 256 KiB of payload, no FS. The connection stays open.
        let _ = client.write_all(b"\x0b").await;
        let _ = client.write_all(&vec![b'x'; 256 * 1024]).await;
        // Wait for the server to hang up; it must not be waiting for us.
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest).await;
        rest
    });

    let mut server = Framed::new(server, Codec::with_max_frame_len(1024));
    let err = server.next().await.unwrap().unwrap_err();
    assert_eq!(
        err.to_string(),
        "frame too large: more than 1024 bytes at byte 0"
    );
    drop(server);
    assert!(sender.await.unwrap().is_empty());
}

#[tokio::test]
async fn connection_closed_inside_a_frame_is_an_error() {
    let (mut client, server) = pair().await;
    client
        .write_all(b"\x0bMSH|1\x1c\x0d\x0bMSH|partial")
        .await
        .unwrap();
    client.shutdown().await.unwrap();

    let mut server = Framed::new(server, Codec::new());
    assert_eq!(server.next().await.unwrap().unwrap(), &b"MSH|1"[..]);
    let err = server.next().await.unwrap().unwrap_err();
    assert_eq!(
        err.to_string(),
        "stream ended inside a frame after 11 payload bytes at byte 8"
    );
    assert!(server.next().await.is_none());
}
