//! A real HTTP/1.1 upstream on loopback that records every request that
//! reaches it (method, target, headers and body as bytes) and answers 200
//! with a small JSON body.
//!
//! It is written on plain `std::net` rather than an HTTP library on purpose:
//! it records header values exactly as Envoy forwarded them, including bytes
//! that are not UTF-8 and repeated headers, which a library would normalize.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Request target, as sent (path and query).
    pub path: String,
    /// Headers in order, names lower-cased, values as bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body (de-chunked if it came chunked).
    pub body: Vec<u8>,
}

impl Seen {
    /// Every value of a header, as text.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// The single value of a header; panics if it appears more than once.
    pub fn header(&self, name: &str) -> Option<String> {
        let all = self.all(name);
        assert!(all.len() <= 1, "{name} appears {} times", all.len());
        all.into_iter().next()
    }

    /// The first value of a header, as the bytes received.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }
}

/// The running upstream. Dropping it stops it accepting connections.
pub struct Upstream {
    /// Its port on 127.0.0.1.
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stopped: Arc<AtomicBool>,
}

impl Upstream {
    /// Starts on an ephemeral port on 127.0.0.1.
    pub fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind upstream: {e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stopped = Arc::new(AtomicBool::new(false));
        let (record, stop) = (Arc::clone(&seen), Arc::clone(&stopped));
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let record = Arc::clone(&record);
                thread::spawn(move || serve(stream, &record));
            }
        });
        Upstream { port, seen, stopped }
    }

    /// Everything received so far, in arrival order.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The last request received.
    pub fn last(&self) -> Option<Seen> {
        self.requests().pop()
    }

    /// How many requests arrived.
    pub fn count(&self) -> usize {
        self.requests().len()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads one line (up to LF) as bytes, without the line ending; `None` at
/// end of stream.
fn read_line(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut raw = Vec::new();
    if reader.read_until(b'\n', &mut raw).unwrap_or(0) == 0 {
        return None;
    }
    while raw.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        raw.pop();
    }
    Some(raw)
}

/// A chunked body, de-chunked (trailers are read and dropped).
fn read_chunked(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?;
        let size_text = String::from_utf8_lossy(&line);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).ok()?;
        if size == 0 {
            while !read_line(reader)?.is_empty() {}
            return Some(body);
        }
        let mut chunk = vec![0; size];
        reader.read_exact(&mut chunk).ok()?;
        body.extend_from_slice(&chunk);
        read_line(reader)?;
    }
}

fn serve(stream: TcpStream, record: &Mutex<Vec<Seen>>) {
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    loop {
        let Some(request_line) = read_line(&mut reader) else {
            return;
        };
        let request_line = String::from_utf8_lossy(&request_line).into_owned();
        let mut parts = request_line.splitn(3, ' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        loop {
            let Some(raw) = read_line(&mut reader) else { return };
            if raw.is_empty() {
                break;
            }
            if let Some(colon) = raw.iter().position(|&b| b == b':') {
                let name = String::from_utf8_lossy(&raw[..colon]).to_ascii_lowercase();
                headers.push((name, raw[colon + 1..].trim_ascii().to_vec()));
            }
        }
        let value = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| String::from_utf8_lossy(v).to_ascii_lowercase())
        };
        let body = if value("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            match read_chunked(&mut reader) {
                Some(body) => body,
                None => return,
            }
        } else {
            let length = value("content-length").and_then(|v| v.trim().parse().ok()).unwrap_or(0);
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            body
        };
        if let Ok(mut seen) = record.lock() {
            seen.push(Seen {
                method,
                path: path.clone(),
                headers,
                body,
            });
        }
        let body = format!("{{\"upstream\":\"demo\",\"path\":{}}}", serde_json::Value::from(path));
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
