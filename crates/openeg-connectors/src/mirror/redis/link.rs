//! The replication link: OpenEG connected to a Redis source as one of its replicas.
//!
//! Our own small client, because no maintained Redis crate speaks the replica side of the
//! protocol. It runs on a thread of its own with blocking I/O (the RDB parser reads a byte
//! stream; an async parser would gain nothing) and hands what it reads to the async side
//! over a bounded channel, so a slow sink slows the reading, never the other way round.
//!
//! The handshake is a replica's: `AUTH`, `PING`, `REPLCONF listening-port`, `REPLCONF capa
//! eof capa psync2`, `PSYNC <replid> <offset+1>` (or `PSYNC ? -1` the first time). The
//! source answers `+CONTINUE` (only the commands after our offset follow) or `+FULLRESYNC
//! <replid> <offset>` (an RDB snapshot follows, disk-based `$<len>` or diskless `$EOF:<mark>`,
//! then the commands after `offset`).
//!
//! Invariants:
//! * The stream offset a batch carries counts every byte of the command stream up to the end
//!   of the batch's last command (PINGs and `REPLCONF` included, as the source counts them),
//!   so `PSYNC <replid> <offset+1>` asks for exactly the next byte.
//! * `REPLCONF ACK` reports what the sink applied (`Acked`), never only what was read: the
//!   source's view of this replica's lag is the true one.

use super::rdb::{Entry, Item, RdbReader};
use super::Endpoint;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Commands per batch at most (and [`BATCH_BYTES`]); a batch also ends when the source has
/// sent nothing more for now.
const BATCH_COMMANDS: usize = 1000;
const BATCH_BYTES: u64 = 4 << 20;
/// Keys per snapshot batch at most, and payload bytes (memory held per batch in flight).
const SNAPSHOT_BATCH: usize = 512;
const SNAPSHOT_BATCH_BYTES: usize = 8 << 20;
/// How long the source may say nothing once the stream runs (it pings every 10 s by default;
/// a real replica gives up after `repl-timeout`, 60 s).
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Redis's default `proto-max-bulk-len`: a longer argument is not a real command.
const MAX_BULK: usize = 512 << 20;
/// How often the applied offset is acknowledged to the source.
const ACK_EVERY: Duration = Duration::from_secs(1);

/// A command of the stream, in the source database it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub db: u32,
    pub args: Vec<Vec<u8>>,
}

/// What the link reads, in order.
#[derive(Debug)]
pub enum Message {
    /// The source starts a full synchronisation: a snapshot follows, then the commands after
    /// `offset`. `size` is the snapshot's length when the source announced it.
    FullSync {
        replid: String,
        offset: u64,
        size: Option<u64>,
    },
    /// The source continues after the offset we asked from (its replication ID may be new).
    Continue { replid: String, offset: u64 },
    /// Keys of the snapshot; `read` counts the snapshot bytes read so far.
    Snapshot { entries: Vec<Entry>, read: u64 },
    /// A function library of the snapshot.
    Function(Vec<u8>),
    /// The snapshot was read whole (its checksum matched).
    SnapshotDone,
    /// Commands of the stream; `offset` is the stream offset after the last one and `db` the
    /// stream's database there (the source sends `SELECT` only when it changes, so a
    /// continued stream starts in it). A batch never ends inside a MULTI … EXEC.
    Commands {
        commands: Vec<Command>,
        offset: u64,
        db: u32,
    },
}

/// The offset the sink has applied, shared with the link's acknowledgements.
#[derive(Debug, Default)]
pub struct Acked(AtomicU64);

impl Acked {
    pub fn set(&self, offset: u64) {
        self.0.store(offset, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A running link; dropping it (or [`LinkHandle::close`]) closes the connection, which ends
/// the link's thread.
pub struct LinkHandle {
    socket: TcpStream,
    stop: Arc<AtomicBool>,
}

impl LinkHandle {
    pub fn close(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}

impl Drop for LinkHandle {
    fn drop(&mut self) {
        self.close();
    }
}

fn proto(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Why the link could not be set up.
#[derive(Debug)]
pub enum LinkError {
    /// Connecting or talking to the source failed (retried after `connect_retry_time`).
    Connect(io::Error),
    /// The source refused us (authentication, a replica that cannot be synced from, …).
    Refused(String),
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Connect(e) => write!(f, "{e}"),
            LinkError::Refused(s) => f.write_str(s),
        }
    }
}

struct Conn {
    reader: BufReader<TcpStream>,
    writer: Arc<Mutex<TcpStream>>,
}

/// Writes one command (the link's writes come from two threads: whole commands only).
fn send_to(w: &Mutex<TcpStream>, args: &[&[u8]]) -> io::Result<()> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    let mut w = w
        .lock()
        .map_err(|_| io::Error::other("link writer poisoned"))?;
    w.write_all(&out)
}

impl Conn {
    fn send(&self, args: &[&[u8]]) -> io::Result<()> {
        send_to(&self.writer, args)
    }

    fn line(&mut self) -> io::Result<String> {
        let mut l = Vec::new();
        // Bounded: a line this long is not a status reply.
        (&mut self.reader)
            .take(64 * 1024)
            .read_until(b'\n', &mut l)?;
        if !l.ends_with(b"\n") {
            return Err(proto("the source closed the connection"));
        }
        while l.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            l.pop();
        }
        Ok(String::from_utf8_lossy(&l).into_owned())
    }

    /// A one-line reply to `args`; an error reply is `Refused`.
    fn call(&mut self, args: &[&[u8]]) -> Result<String, LinkError> {
        self.send(args).map_err(LinkError::Connect)?;
        let l = self.line().map_err(LinkError::Connect)?;
        match l.strip_prefix('-') {
            Some(e) => Err(LinkError::Refused(e.to_string())),
            None => Ok(l),
        }
    }
}

/// Where a stored position says the stream stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub replid: String,
    pub offset: u64,
    pub db: u32,
}

/// Connects to the source as a replica and starts a thread that sends what it reads to `tx`.
/// Returns once the source answered PSYNC (the first message is then `FullSync` or
/// `Continue`).
pub fn start(
    ep: &Endpoint,
    resume: Option<Resume>,
    acked: Arc<Acked>,
    tx: mpsc::Sender<io::Result<Message>>,
) -> Result<LinkHandle, LinkError> {
    let addr = ep
        .addr
        .to_socket_addrs()
        .map_err(LinkError::Connect)?
        .next()
        .ok_or_else(|| LinkError::Refused(format!("{} has no address", ep.addr)))?;
    let s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(LinkError::Connect)?;
    s.set_nodelay(true).map_err(LinkError::Connect)?;
    // The handshake has a deadline; the stream itself has none (an idle source is fine).
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(LinkError::Connect)?;
    let port = s.local_addr().map(|a| a.port()).unwrap_or(0).to_string();
    let writer = Arc::new(Mutex::new(s.try_clone().map_err(LinkError::Connect)?));
    let handle = LinkHandle {
        socket: s.try_clone().map_err(LinkError::Connect)?,
        stop: Arc::new(AtomicBool::new(false)),
    };
    let mut c = Conn {
        reader: BufReader::with_capacity(256 * 1024, s),
        writer,
    };
    if let Some(pw) = ep.password.as_deref() {
        c.call(&[b"AUTH", pw.as_bytes()])?;
    }
    c.call(&[b"PING"])?;
    c.call(&[b"REPLCONF", b"listening-port", port.as_bytes()])?;
    c.call(&[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"])?;
    let (id, off) = match &resume {
        Some(r) => (r.replid.clone(), (r.offset + 1).to_string()),
        None => ("?".to_string(), "-1".to_string()),
    };
    c.send(&[b"PSYNC", id.as_bytes(), off.as_bytes()])
        .map_err(LinkError::Connect)?;
    // The source may send empty lines (keep-alives) before its answer.
    let reply = loop {
        let l = c.line().map_err(LinkError::Connect)?;
        if !l.is_empty() {
            break l;
        }
    };
    if let Some(e) = reply.strip_prefix('-') {
        return Err(LinkError::Refused(e.to_string()));
    }
    let mut words = reply.trim_start_matches('+').split(' ');
    let first = match (words.next(), words.next(), words.next()) {
        (Some("FULLRESYNC"), Some(replid), Some(offset)) => Message::FullSync {
            replid: replid.to_string(),
            offset: offset
                .parse()
                .map_err(|_| LinkError::Refused(format!("bad PSYNC reply: {reply}")))?,
            size: None,
        },
        (Some("CONTINUE"), new_id, _) => match &resume {
            Some(r) => Message::Continue {
                replid: new_id
                    .map(str::to_string)
                    .unwrap_or_else(|| r.replid.clone()),
                offset: r.offset,
            },
            None => return Err(LinkError::Refused("CONTINUE without a position".into())),
        },
        _ => {
            return Err(LinkError::Refused(format!(
                "unexpected PSYNC reply: {reply}"
            )))
        }
    };
    c.reader
        .get_ref()
        .set_read_timeout(Some(READ_TIMEOUT))
        .map_err(LinkError::Connect)?;
    let stop = handle.stop.clone();
    let db = resume.map(|r| r.db).unwrap_or(0);
    std::thread::Builder::new()
        .name("openeg-redis-link".into())
        .spawn(move || {
            let result = run(c, first, db, acked, &tx, &stop);
            if let Err(e) = result {
                if !stop.load(Ordering::Relaxed) {
                    let _ = tx.blocking_send(Err(e));
                }
            }
        })
        .map_err(LinkError::Connect)?;
    Ok(handle)
}

/// How the snapshot's bulk transfer is delimited.
enum Bulk {
    Len(u64),
    Eof(Vec<u8>),
}

fn send(tx: &mpsc::Sender<io::Result<Message>>, m: Message) -> io::Result<()> {
    tx.blocking_send(Ok(m))
        .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the job stopped"))
}

/// Sends the snapshot keys gathered so far, if any (`read`: snapshot bytes read).
fn flush(
    tx: &mpsc::Sender<io::Result<Message>>,
    entries: &mut Vec<Entry>,
    held: &mut usize,
    read: u64,
) -> io::Result<()> {
    *held = 0;
    if entries.is_empty() {
        return Ok(());
    }
    let entries = std::mem::take(entries);
    send(tx, Message::Snapshot { entries, read })
}

fn ack(w: &Mutex<TcpStream>, offset: u64) -> io::Result<()> {
    send_to(w, &[b"REPLCONF", b"ACK", offset.to_string().as_bytes()])
}

fn run(
    mut c: Conn,
    first: Message,
    mut db: u32,
    acked: Arc<Acked>,
    tx: &mpsc::Sender<io::Result<Message>>,
    stop: &Arc<AtomicBool>,
) -> io::Result<()> {
    let offset = match &first {
        Message::FullSync { offset, .. } | Message::Continue { offset, .. } => *offset,
        _ => 0,
    };
    if let Message::FullSync { replid, offset, .. } = first {
        // Nothing of this snapshot is applied yet; a new stream starts with a SELECT.
        acked.set(0);
        db = 0;
        // The source may send newlines while it prepares the snapshot.
        let header = loop {
            let l = c.line()?;
            if !l.is_empty() {
                break l;
            }
        };
        let bulk = match header.strip_prefix("$EOF:") {
            Some(mark) if mark.len() == 40 => Bulk::Eof(mark.as_bytes().to_vec()),
            Some(_) => return Err(proto("bad diskless snapshot mark")),
            None => Bulk::Len(
                header
                    .strip_prefix('$')
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| proto(format!("expected the snapshot, got {header:?}")))?,
            ),
        };
        let size = match bulk {
            Bulk::Len(n) => Some(n),
            Bulk::Eof(_) => None,
        };
        send(
            tx,
            Message::FullSync {
                replid,
                offset,
                size,
            },
        )?;
        let mut rdb = RdbReader::new(&mut c.reader)?;
        let mut entries = Vec::new();
        let mut held = 0usize;
        loop {
            match rdb.next_item()? {
                Item::Entry(e) => {
                    held += e.payload.len() + e.key.len();
                    entries.push(e);
                    if entries.len() >= SNAPSHOT_BATCH || held >= SNAPSHOT_BATCH_BYTES {
                        flush(tx, &mut entries, &mut held, rdb.bytes_read())?;
                    }
                }
                Item::Function(code) => {
                    flush(tx, &mut entries, &mut held, rdb.bytes_read())?;
                    send(tx, Message::Function(code))?;
                }
                Item::End => break,
            }
        }
        let read = rdb.bytes_read();
        drop(rdb);
        flush(tx, &mut entries, &mut held, read)?;
        match bulk {
            Bulk::Len(n) if n != read => {
                return Err(proto(format!("the snapshot was {n} bytes, its RDB {read}")))
            }
            Bulk::Len(_) => {}
            Bulk::Eof(mark) => {
                let mut tail = vec![0u8; mark.len()];
                c.reader.read_exact(&mut tail)?;
                if tail != mark {
                    return Err(proto("the diskless snapshot does not end with its mark"));
                }
            }
        }
        send(tx, Message::SnapshotDone)?;
        // A diskless source streams commands only after the first acknowledgement, which
        // says the snapshot is loaded: so only once the sink has applied all of it.
        while acked.get() < offset {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        ack(&c.writer, offset)?;
    } else {
        send(tx, first)?;
    }
    // Acknowledge what the sink applied, every second, until the link closes.
    let writer = c.writer.clone();
    let ack_stop = stop.clone();
    let ack_acked = acked.clone();
    std::thread::Builder::new()
        .name("openeg-redis-ack".into())
        .spawn(move || {
            while !ack_stop.load(Ordering::Relaxed) {
                std::thread::sleep(ACK_EVERY);
                if ack(&writer, ack_acked.get()).is_err() {
                    break;
                }
            }
        })?;
    stream(c, offset, db, &acked, tx)
}

/// Reads the command stream after `offset` until the connection ends.
fn stream(
    c: Conn,
    mut offset: u64,
    mut db: u32,
    acked: &Acked,
    tx: &mpsc::Sender<io::Result<Message>>,
) -> io::Result<()> {
    let Conn { mut reader, writer } = c;
    // Inside MULTI … EXEC: the batch may not end there (what the sink queued would be lost
    // with the connection, while the position said it was applied).
    let mut in_multi = false;
    let mut batch = Vec::new();
    let mut bytes = 0u64;
    loop {
        let (args, size) = read_command(&mut reader)?;
        bytes += size;
        let name = args
            .first()
            .map(|a| a.to_ascii_uppercase())
            .unwrap_or_default();
        match name.as_slice() {
            b"PING" => {}
            b"SELECT" => {
                db = args
                    .get(1)
                    .and_then(|d| std::str::from_utf8(d).ok())
                    .and_then(|d| d.parse().ok())
                    .ok_or_else(|| proto("a SELECT without a database number"))?;
            }
            b"REPLCONF" => {
                if args
                    .get(1)
                    .is_some_and(|a| a.eq_ignore_ascii_case(b"GETACK"))
                {
                    ack(&writer, acked.get())?;
                }
            }
            _ => {
                match name.as_slice() {
                    b"MULTI" => in_multi = true,
                    b"EXEC" | b"DISCARD" => in_multi = false,
                    _ => {}
                }
                batch.push(Command { db, args })
            }
        }
        // A batch ends when it is full or when nothing more has arrived yet, never inside a
        // transaction.
        let due =
            batch.len() >= BATCH_COMMANDS || bytes >= BATCH_BYTES || reader.buffer().is_empty();
        if due && !in_multi {
            offset += bytes;
            bytes = 0;
            send(
                tx,
                Message::Commands {
                    commands: std::mem::take(&mut batch),
                    offset,
                    db,
                },
            )?;
        }
    }
}

/// One command of the stream (a RESP array of bulk strings) and its size in bytes.
fn read_command<R: BufRead>(r: &mut R) -> io::Result<(Vec<Vec<u8>>, u64)> {
    let head = read_line(r)?;
    let mut size = head.len() as u64 + 2;
    let n: usize = head
        .strip_prefix(b"*")
        .and_then(|n| std::str::from_utf8(n).ok())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| proto("the command stream is not a RESP array"))?;
    if n > 1 << 24 {
        return Err(proto("a command of over 16M arguments"));
    }
    let mut args = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let l = read_line(r)?;
        size += l.len() as u64 + 2;
        let len: usize = l
            .strip_prefix(b"$")
            .and_then(|n| std::str::from_utf8(n).ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| proto("a command argument is not a bulk string"))?;
        if len > MAX_BULK {
            return Err(proto("an argument over 512 MiB"));
        }
        // Memory grows with what arrives, not with what the length claims.
        let mut a = Vec::with_capacity(len.min(1 << 20) + 2);
        (&mut *r).take(len as u64 + 2).read_to_end(&mut a)?;
        if a.len() != len + 2 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the source closed the link mid-command",
            ));
        }
        if &a[len..] != b"\r\n" {
            return Err(proto("a bulk string without its CRLF"));
        }
        size += a.len() as u64;
        a.truncate(len);
        args.push(a);
    }
    Ok((args, size))
}

fn read_line<R: BufRead>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut l = Vec::new();
    r.take(64 * 1024).read_until(b'\n', &mut l)?;
    if !l.ends_with(b"\r\n") {
        return Err(if l.is_empty() {
            io::Error::new(io::ErrorKind::UnexpectedEof, "the source closed the link")
        } else {
            proto("a malformed line in the command stream")
        });
    }
    l.truncate(l.len() - 2);
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_and_refuses_garbage() {
        let data = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n*1\r\n$4\r\nPING\r\n";
        let mut r = &data[..];
        assert_eq!(
            read_command(&mut r).unwrap(),
            (vec![b"SET".to_vec(), b"k".to_vec(), Vec::new()], 26)
        );
        assert_eq!(read_command(&mut r).unwrap(), (vec![b"PING".to_vec()], 14));
        assert_eq!(
            read_command(&mut r).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        for bad in [
            &b"+OK\r\n"[..],
            b"*1\r\n:1\r\n",
            b"*1\r\n$3\r\nabcd\r\n",
            b"*1\r\n$3\r\nab",
        ] {
            assert!(read_command(&mut &bad[..]).is_err(), "{bad:?}");
        }
    }
}
