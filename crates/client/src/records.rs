//! Moving records: encrypt a file while it streams into a node's vault, and decrypt an audited
//! read while it streams out, each with memory bounded by a few chunks whatever the size. The
//! cipher work runs on its own thread, so network and cryptography overlap.

use std::io::{Read, Write};

use bytes::Bytes;
use medledger_core::{Hash, encoding};
use sha2::{Digest, Sha256};

use crate::{
    ClientError, NodeClient,
    envelope::{DataKey, Decryptor, EncryptSummary},
    error::{HttpError, RecordError},
    http::RecordStream,
};

/// Chunks in flight between the cipher thread and the network.
const IN_FLIGHT: usize = 4;
/// Ciphertext handed to the network at a time.
const SEND_CHUNK: usize = 1024 * 1024;

/// A writer that hands what is written to the upload a chunk at a time, blocking while the
/// network is behind, so memory stays bounded.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= SEND_CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(SEND_CHUNK));
        self.tx
            .blocking_send(Ok(chunk.into()))
            .map_err(|_| std::io::Error::other("the upload stopped"))
    }
}

/// What wrapped keys and sealed metadata of a record are bound to (the HPKE and AEAD
/// associated data): the hash of its ciphertext. The PMR-ID does not exist yet when they are
/// made, and a fresh data key makes every ciphertext, and so this context, unique.
pub fn context(content: &Hash) -> Vec<u8> {
    encoding::encode(&("medledger record", content))
}

fn io_error(action: &'static str, source: std::io::Error) -> ClientError {
    ClientError::Record(RecordError::Io { action, source })
}

fn stopped(action: &'static str, why: &str) -> ClientError {
    io_error(action, std::io::Error::other(why.to_owned()))
}

/// Encrypts everything `input` yields under `key` and streams the ciphertext into the node's
/// vault. `progress` is told the plaintext bytes done so far. Checks that the node stored
/// exactly what was encrypted.
pub async fn upload_encrypted(
    client: &NodeClient,
    key: &DataKey,
    mut input: impl Read + Send + 'static,
    progress: impl Fn(u64) + Send + 'static,
) -> Result<EncryptSummary, ClientError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(IN_FLIGHT);
    let key = DataKey::from_bytes(*key.expose_secret());
    let cipher = tokio::task::spawn_blocking(move || -> Result<EncryptSummary, ClientError> {
        // Encrypts on this thread while `encrypt` hashes the ciphertext on a second one.
        let mut sink = ChannelWriter { tx, buf: Vec::with_capacity(SEND_CHUNK) };
        let summary = crate::envelope::encrypt(&key, &mut input, &mut sink, &mut |n| progress(n))?;
        sink.flush().map_err(|e| io_error("upload", e))?;
        Ok(summary)
    });
    let body =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
        );
    let uploaded = client.upload(reqwest::Body::wrap_stream(body), None).await;
    let summary = cipher.await.map_err(|_| stopped("encrypt", "the encryption thread panicked"))?;
    let stored = uploaded?;
    let summary = summary?;
    if stored.hash != summary.ciphertext_sha256 || stored.size != summary.ciphertext_len {
        return Err(ClientError::Http(HttpError::BadResponse {
            url: client.base_url().to_owned(),
            reason: format!(
                "the node stored {} ({} bytes) but this machine encrypted {} ({} bytes)",
                stored.hash, stored.size, summary.ciphertext_sha256, summary.ciphertext_len
            ),
        }));
    }
    Ok(summary)
}

/// Uploads a small blob (a wrapped key, sealed metadata), announcing its hash.
pub async fn upload_small(client: &NodeClient, bytes: Vec<u8>) -> Result<Hash, ClientError> {
    let hash = Hash::of(&bytes);
    client.upload(reqwest::Body::from(bytes), Some(&hash)).await?;
    Ok(hash)
}

/// Decrypts the ciphertext of an audited read into `output` as it arrives, checking it
/// against `content` (the hash on the ledger). `progress` is told the ciphertext bytes
/// received. Returns the plaintext length. Until this returns `Ok`, what was written is
/// unauthenticated: write to a temporary file and move it into place afterwards.
pub async fn download_decrypted(
    mut stream: RecordStream,
    key: &DataKey,
    content: &Hash,
    mut output: impl Write + Send + 'static,
    progress: impl Fn(u64) + Send + 'static,
) -> Result<u64, ClientError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(IN_FLIGHT);
    let key = DataKey::from_bytes(*key.expose_secret());
    let expected = *content;
    let cipher = tokio::task::spawn_blocking(move || -> Result<u64, ClientError> {
        let mut hasher = Sha256::new();
        let mut dec = Decryptor::new(&key);
        let mut plain = Vec::new();
        let mut received = 0u64;
        while let Some(chunk) = rx.blocking_recv() {
            hasher.update(&chunk);
            dec.update(&chunk, &mut plain)?;
            output.write_all(&plain).map_err(|e| io_error("write the file", e))?;
            plain.clear();
            received += chunk.len() as u64;
            progress(received);
        }
        let got = Hash(hasher.finalize().into());
        if got != expected {
            return Err(stopped(
                "check the record",
                &format!(
                    "the ciphertext received hashes to {got}, not to {expected}: nothing was kept"
                ),
            ));
        }
        let n = dec.finish(&mut plain)?;
        output.write_all(&plain).map_err(|e| io_error("write the file", e))?;
        output.flush().map_err(|e| io_error("write the file", e))?;
        Ok(n)
    });
    let mut failed = None;
    loop {
        match stream.chunk().await {
            Ok(Some(chunk)) => {
                if tx.send(chunk).await.is_err() {
                    break; // the cipher thread stopped; its error says why
                }
            }
            Ok(None) => break,
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let result = cipher.await.map_err(|_| stopped("decrypt", "the decryption thread panicked"))?;
    match failed {
        Some(e) => Err(e),
        None => result,
    }
}
