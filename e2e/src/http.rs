//! A minimal HTTP/1.1 client over a raw socket: it sends exactly the bytes
//! a test writes (repeated headers, invalid UTF-8, absolute-form targets),
//! which ordinary clients normalize away.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A response as received.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The `error` code of a deny body.
    pub fn error_code(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

/// Sends raw request bytes and reads one response (the request should ask
/// for `connection: close`).
pub fn send_raw(port: u16, request: &[u8]) -> Response {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        // Nothing listening: status 0, as for a reset connection.
        return Response {
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
        };
    };
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    if stream.write_all(request).is_err() {
        // Reset before the request went out (a server killed mid-test).
        return parse(&[]);
    }
    // Read until the response is complete rather than until the server
    // closes: Envoy delays closing after a local reply (delayed_close_timeout)
    // and waiting for it would add a second to every denied request.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if response_complete(&raw) {
            break;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    parse(&raw)
}

fn response_complete(raw: &[u8]) -> bool {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let body = &raw[split + 4..];
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    match head.lines().find_map(|l| l.strip_prefix("content-length:")) {
        Some(len) => len.trim().parse::<usize>().is_ok_and(|n| body.len() >= n),
        // No length: the body ends when the server closes.
        None => head.starts_with("http/1.1 204") || head.starts_with("http/1.1 304"),
    }
}

/// A GET (or other method) with extra headers, as raw bytes.
pub fn request(port: u16, method: &str, target: &str, headers: &[(&str, &[u8])]) -> Response {
    let mut req = format!("{method} {target} HTTP/1.1\r\nhost: api.local\r\nconnection: close\r\n").into_bytes();
    for (name, value) in headers {
        req.extend_from_slice(name.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
    }
    if method == "POST" || method == "PUT" || method == "PATCH" {
        req.extend_from_slice(b"content-length: 0\r\n");
    }
    req.extend_from_slice(b"\r\n");
    send_raw(port, &req)
}

/// A request with a JSON body (or none) and extra headers.
pub fn call(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<&serde_json::Value>,
) -> Response {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        req.push_str("content-type: application/json\r\n");
    }
    req.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    send_raw(port, req.as_bytes())
}

/// A GET with a grant in `x-jit-grant`.
pub fn get_with_grant(port: u16, path: &str, grant: &str) -> Response {
    request(port, "GET", path, &[("x-jit-grant", grant.as_bytes())])
}

/// A GET over HTTP/2 cleartext (prior knowledge) with `host: api.local`
/// and extra headers, sent by curl (which `scripts/setup` installs); status
/// 0 if curl fails.
pub fn get_h2(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "-i", "--http2-prior-knowledge", "-H", "host: api.local"]);
    for (name, value) in headers {
        cmd.args(["-H", &format!("{name}: {value}")]);
    }
    cmd.arg(format!("http://127.0.0.1:{port}{path}"));
    let out = cmd.output().map(|o| o.stdout).unwrap_or_default();
    parse(&out)
}

fn parse(raw: &[u8]) -> Response {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        // No (complete) response: the connection was closed or reset.
        return Response {
            status: 0,
            headers: Vec::new(),
            body: raw.to_vec(),
        };
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Response { status, headers, body }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}
