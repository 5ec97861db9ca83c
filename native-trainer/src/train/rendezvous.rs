//! The rendezvous and liveness watch of a multi-process run. Rank 0 listens on `MASTER_PORT + 1`; every
//! other process dials it and announces its rank and the address of its end of the all-reduce ring
//! (`ring.rs`); rank 0 answers each with every process's address. The connections then stay open as the
//! liveness watch: an all-reduce whose peer died would wait forever, so both ends of each connection send
//! a heartbeat every few seconds. A process that is killed closes its sockets (the
//! kernel does, at once); one whose machine vanishes stops beating. Either way the other end exits with a
//! message within [`SILENCE`], and since a non-zero rank only watches rank 0, and rank 0 exits when any
//! rank is lost, the whole run stops, never hangs.
//!
//! After the addresses, messages are single bytes: `b'h'` (heartbeat) and `b'd'` (this process succeeded;
//! a closed connection after it is expected).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::launch::Launch;
use crate::error::{CliError, CliResult};

const BEAT: Duration = Duration::from_secs(5);
/// How long a peer may be silent before it counts as lost.
pub const SILENCE: Duration = Duration::from_secs(30);
/// How long rank 0's watch waits for every process to dial in, and a process for rank 0 to answer.
const JOIN: Duration = Duration::from_secs(300);

pub struct Liveness {
    streams: Vec<TcpStream>,
    finished: Arc<AtomicBool>,
}

impl Liveness {
    /// Meets the other processes (rank 0 waits for them, the others dial rank 0) and returns every
    /// process's ring address, `own` among them. From then on a lost peer ends this process with exit
    /// code 1.
    pub fn start(launch: &Launch, own: SocketAddr) -> CliResult<(Self, Vec<SocketAddr>)> {
        let (streams, addresses) = match launch.is_main() {
            true => accept_all(launch, own)?,
            false => dial(launch, own)?,
        };
        let finished = Arc::new(AtomicBool::new(false));
        for (stream, peer) in streams.iter().zip(peers(launch)) {
            let (reader, beater) = (clone(stream)?, clone(stream)?);
            let finished = finished.clone();
            std::thread::spawn(move || watch(reader, peer, &finished));
            std::thread::spawn(move || beat(beater));
        }
        Ok((Self { streams, finished }, addresses))
    }

    /// Closes this process's connections. After a success the peers are told so (`d`); after an error
    /// they see the connection close and stop too, as they would for a crash, since they may be waiting
    /// in an all-reduce this process will never join.
    pub fn finish(self, succeeded: bool) {
        self.finished.store(true, Ordering::SeqCst);
        for mut stream in self.streams {
            if succeeded {
                let _ = stream.write_all(b"d").and_then(|()| stream.flush());
            }
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// The ranks at the other end of this process's connections, in order.
fn peers(launch: &Launch) -> Vec<usize> {
    match launch.is_main() {
        true => (1..launch.processes).collect(),
        false => vec![0],
    }
}

type Joined = (Vec<TcpStream>, Vec<SocketAddr>);

fn accept_all(launch: &Launch, own: SocketAddr) -> CliResult<Joined> {
    let port = launch.liveness_port();
    let listener = TcpListener::bind(("0.0.0.0", port)).map_err(|e| {
        failure(format!(
            "cannot listen on port {port} (MASTER_PORT + 1): {e}"
        ))
    })?;
    listener.set_nonblocking(true).map_err(io)?;
    let mut joined: Vec<Option<(TcpStream, SocketAddr)>> =
        (1..launch.processes).map(|_| None).collect();
    let deadline = Instant::now() + JOIN;
    while joined.iter().any(Option::is_none) {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false).map_err(io)?;
                stream.set_read_timeout(Some(SILENCE)).map_err(io)?;
                let rank = read_u32(&mut stream)? as usize;
                let address = read_address(&mut stream)?;
                let slot = joined.get_mut(rank.wrapping_sub(1)).ok_or_else(|| {
                    failure(format!(
                        "a process of rank {rank} dialled in; the world has {}",
                        launch.processes
                    ))
                })?;
                *slot = Some((stream, address));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let missing: Vec<String> = (1..launch.processes)
                    .filter(|r| joined[r - 1].is_none())
                    .map(|r| r.to_string())
                    .collect();
                return Err(failure(format!(
                    "ranks {} did not join within {} s",
                    missing.join(", "),
                    JOIN.as_secs()
                )));
            }
            Err(e) => return Err(io(e)),
        }
    }
    let (mut streams, others): (Vec<TcpStream>, Vec<SocketAddr>) =
        joined.into_iter().flatten().unzip();
    let addresses: Vec<SocketAddr> = std::iter::once(own).chain(others).collect();
    for stream in &mut streams {
        for address in &addresses {
            write_address(stream, address)?;
        }
    }
    Ok((streams, addresses))
}

fn dial(launch: &Launch, own: SocketAddr) -> CliResult<Joined> {
    let address = (launch.master.as_str(), launch.liveness_port());
    let mut stream = connect_within(address, JOIN).map_err(|e| {
        failure(format!(
            "rank 0 at {}:{} did not answer within {} s: {e}",
            address.0,
            address.1,
            JOIN.as_secs()
        ))
    })?;
    stream.set_read_timeout(Some(JOIN)).map_err(io)?;
    stream
        .write_all(&(launch.rank as u32).to_le_bytes())
        .map_err(io)?;
    write_address(&mut stream, &own)?;
    // Rank 0 answers once every process has joined.
    let addresses = (0..launch.processes)
        .map(|_| read_address(&mut stream))
        .collect::<CliResult<Vec<_>>>()?;
    stream.set_read_timeout(Some(SILENCE)).map_err(io)?;
    Ok((vec![stream], addresses))
}

/// A connection to `address`, retried until `patience` has passed (the other process may not listen yet).
pub fn connect_within(
    address: impl std::net::ToSocketAddrs + Copy,
    patience: Duration,
) -> std::io::Result<TcpStream> {
    let deadline = Instant::now() + patience;
    loop {
        match TcpStream::connect(address) {
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            result => return result,
        }
    }
}

fn write_address(stream: &mut TcpStream, address: &SocketAddr) -> CliResult {
    let text = address.to_string();
    stream
        .write_all(&(text.len() as u32).to_le_bytes())
        .map_err(io)?;
    stream.write_all(text.as_bytes()).map_err(io)
}

fn read_address(stream: &mut TcpStream) -> CliResult<SocketAddr> {
    let len = read_u32(stream)? as usize;
    if len > 64 {
        return Err(failure(format!(
            "a {len}-byte address: not a popalign process"
        )));
    }
    let mut text = vec![0u8; len];
    stream.read_exact(&mut text).map_err(io)?;
    String::from_utf8_lossy(&text)
        .parse()
        .map_err(|e| failure(format!("address {:?}: {e}", String::from_utf8_lossy(&text))))
}

fn read_u32(stream: &mut TcpStream) -> CliResult<u32> {
    let mut bytes = [0u8; 4];
    stream.read_exact(&mut bytes).map_err(io)?;
    Ok(u32::from_le_bytes(bytes))
}

/// Reads `peer`'s messages until it finishes; exits the process when it is lost first.
fn watch(mut stream: TcpStream, peer: usize, finished: &AtomicBool) {
    let mut byte = [0u8; 1];
    let lost = loop {
        match stream.read(&mut byte) {
            Ok(1) if byte[0] == b'd' => return,
            Ok(1) => continue,
            Ok(_) => break "its connection closed".to_string(),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break format!("silent for {} s", SILENCE.as_secs());
            }
            Err(e) => break e.to_string(),
        }
    };
    if !finished.load(Ordering::SeqCst) {
        exit_lost(peer, lost);
    }
}

/// Ends this process (exit code 1) because `peer` was lost. The watch and the all-reduce ring both call it:
/// whichever notices first, the message and the exit code are the same.
pub fn exit_lost(peer: usize, why: impl std::fmt::Display) -> ! {
    eprintln!("error: the training process of rank {peer} was lost ({why}); stopping this one too");
    std::process::exit(1);
}

fn beat(mut stream: TcpStream) {
    while stream.write_all(b"h").is_ok() {
        std::thread::sleep(BEAT);
    }
}

fn clone(stream: &TcpStream) -> CliResult<TcpStream> {
    stream.try_clone().map_err(io)
}

fn failure(message: String) -> CliError {
    CliError::Runtime(format!("multi-process training: {message}"))
}

fn io(e: std::io::Error) -> CliError {
    failure(e.to_string())
}
