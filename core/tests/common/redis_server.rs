//! A real `redis-server` on a free loopback port, started for a test and
//! stopped (killed) when dropped. No persistence, nothing beyond
//! 127.0.0.1.
//!
//! The binary is `$STOCKADE_REDIS_SERVER` or `redis-server` on the `PATH`
//! (`scripts/test.sh` installs Debian's package when it is missing). A
//! missing binary fails the test: it never passes by skipping.

// Each test binary that includes this file uses part of it.
#![allow(dead_code)]

use core::net::SocketAddr;
use core::time::Duration;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// A running server.
pub(crate) struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    /// Starts a server on a free port and waits (at most 10 s) until it
    /// answers `PING`.
    pub(crate) fn start() -> RedisServer {
        let port = free_port();
        let mut server = RedisServer { child: None, port };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let binary =
            std::env::var("STOCKADE_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&binary)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
                "--loglevel",
                "warning",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary} (install redis-server, or set STOCKADE_REDIS_SERVER): {e}")
            });
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if let Ok(reply) = self.try_command(&["PING"]) {
                if reply == "+PONG" {
                    return;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server on port {} did not answer PING within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The server's URL (database 0).
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `kill -9`: the server dies mid-run, as in a crash.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (after [`kill`](Self::kill)).
    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none(), "restart a killed server only");
        self.spawn();
    }

    /// Sends one command and returns the first line of the reply (for
    /// simple replies), or the whole reply for bulk and array replies.
    /// Panics on I/O errors.
    pub(crate) fn command(&self, args: &[&str]) -> String {
        self.try_command(args)
            .unwrap_or_else(|e| panic!("redis command {args:?} failed: {e}"))
    }

    fn try_command(&self, args: &[&str]) -> std::io::Result<String> {
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{}\r\n", arg.len(), arg));
        }
        stream.write_all(request.as_bytes())?;
        let mut reader = BufReader::new(stream);
        read_reply(&mut reader)
    }
}

/// Reads one RESP2 reply as text: `+OK`, `-ERR ...`, `:12`, the bulk
/// string's content, or the array's elements joined by `\n`.
fn read_reply(reader: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end().to_string();
    match line.as_bytes().first() {
        Some(b'$') => {
            let len: i64 = line[1..].parse().unwrap_or(-1);
            if len < 0 {
                return Ok(String::new());
            }
            let mut buf = vec![0; len as usize + 2];
            reader.read_exact(&mut buf)?;
            buf.truncate(len as usize);
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        Some(b'*') => {
            let n: i64 = line[1..].parse().unwrap_or(-1);
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                items.push(read_reply(reader)?);
            }
            Ok(items.join("\n"))
        }
        Some(b':') => Ok(line[1..].to_string()),
        _ => Ok(line),
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port nobody listens on now (the OS picks it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Redis Cluster's key slot: CRC16 (XMODEM) of the hash tag (the part
/// between the first `{` and the next `}`, if non-empty) or of the whole
/// key, modulo 16384. Written from the Cluster specification, not taken
/// from the library under test.
pub(crate) fn cluster_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let mut hashed = bytes;
    if let Some(open) = bytes.iter().position(|&b| b == b'{') {
        if let Some(close) = bytes[open + 1..].iter().position(|&b| b == b'}') {
            if close > 0 {
                hashed = &bytes[open + 1..open + 1 + close];
            }
        }
    }
    crc16_xmodem(hashed) % 16384
}

fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[test]
fn crc16_matches_the_cluster_specification() {
    // The specification's test vector: CRC16("123456789") = 0x31C3.
    assert_eq!(crc16_xmodem(b"123456789"), 0x31c3);
    assert_eq!(
        cluster_slot("{user1000}.following"),
        cluster_slot("{user1000}.followers")
    );
    assert_eq!(
        cluster_slot("foo{}{bar}"),
        crc16_xmodem(b"foo{}{bar}") % 16384
    );
}
