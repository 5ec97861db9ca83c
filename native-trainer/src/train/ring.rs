//! Ring all-reduce between the processes of a multi-process run, over plain TCP.
//!
//! Why our own: burn-collective 0.21's global mode (its orchestrator and peer-to-peer tensor service) ends
//! every all-reduce with a barrier that never resets (`global/node/sync.rs` clears a copy of its list of
//! synced peers, not the list), so the second all-reduce of a run waits forever; measured with two
//! processes on this machine (docs/cluster.md). This is the textbook ring (reduce-scatter, then
//! all-gather): each process sends and receives 2·(N−1)/N of the buffer whatever N, so the cost per step
//! does not grow with the number of processes.
//!
//! Every message starts with its element count, so processes that fall out of step (different buffers)
//! stop with an error instead of summing unrelated numbers. A neighbour that is gone ends this process
//! as the liveness watch would (`rendezvous::exit_lost`), whichever of the two notices first.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use super::launch::Launch;
use super::rendezvous::{connect_within, exit_lost};
use crate::error::{CliError, CliResult};

pub struct Ring {
    pub rank: usize,
    pub world: usize,
    /// To rank + 1.
    next: TcpStream,
    /// From rank − 1.
    prev: TcpStream,
}

/// Binds this process's ring port, `MASTER_PORT + 2 + rank`, so its address can be announced before the
/// ring connects.
pub fn listen(launch: &Launch) -> CliResult<(TcpListener, SocketAddr)> {
    let port = launch.ring_port();
    let listener = TcpListener::bind(("0.0.0.0", port)).map_err(|e| {
        failure(format!(
            "cannot listen on port {port} (MASTER_PORT + 2 + RANK): {e}"
        ))
    })?;
    Ok((listener, SocketAddr::new(launch.own_ip()?, port)))
}

impl Ring {
    /// Connects to the next process (its address from the rendezvous) and accepts the previous one.
    pub fn connect(
        listener: TcpListener,
        launch: &Launch,
        addresses: &[SocketAddr],
    ) -> CliResult<Self> {
        let world = launch.processes;
        let next_address = addresses[(launch.rank + 1) % world];
        let next = connect_within(next_address, Duration::from_secs(60)).map_err(|e| {
            failure(format!(
                "cannot reach the next process at {next_address}: {e}"
            ))
        })?;
        let (prev, _) = listener.accept().map_err(io)?;
        for stream in [&next, &prev] {
            stream.set_nodelay(true).map_err(io)?;
        }
        Ok(Self {
            rank: launch.rank,
            world,
            next,
            prev,
        })
    }

    /// Replaces `values` by their element-wise mean over the processes.
    pub fn mean(&mut self, values: &mut [f32]) -> CliResult {
        let (rank, world, len) = (self.rank, self.world, values.len());
        let chunk = |i: usize| i * len / world..(i + 1) * len / world;
        let at = |offset: usize| (rank + world * 2 - offset) % world;
        // Reduce-scatter: after step s, chunk rank−s−1 holds the sum over s+2 processes.
        for step in 0..world - 1 {
            let (send, receive) = (chunk(at(step)), chunk(at(step + 1)));
            let incoming = self.exchange(&values[send], receive.len())?;
            for (v, x) in values[receive].iter_mut().zip(incoming) {
                *v += x;
            }
        }
        // All-gather: every complete chunk travels once round the ring.
        for step in 0..world - 1 {
            let (send, receive) = (chunk((rank + 1 + world - step) % world), chunk(at(step)));
            let incoming = self.exchange(&values[send], receive.len())?;
            values[receive].copy_from_slice(&incoming);
        }
        let n = world as f32;
        values.iter_mut().for_each(|v| *v /= n);
        Ok(())
    }

    /// Sends `out` to the next process while receiving `expected` values from the previous one (both at
    /// once: two processes that each finished sending before receiving would block on full buffers).
    fn exchange(&mut self, out: &[f32], expected: usize) -> CliResult<Vec<f32>> {
        let mut message = Vec::with_capacity(8 + 4 * out.len());
        message.extend_from_slice(&(out.len() as u64).to_le_bytes());
        out.iter()
            .for_each(|v| message.extend_from_slice(&v.to_le_bytes()));
        let (next, prev) = (&mut self.next, &mut self.prev);
        let (before, after) = (
            (self.rank + self.world - 1) % self.world,
            (self.rank + 1) % self.world,
        );
        std::thread::scope(|scope| {
            let sending = scope.spawn(move || next.write_all(&message));
            let received = receive(prev, expected, before);
            if let Err(e) = sending.join().expect("sending thread") {
                exit_lost(after, format!("sending to it: {e}"));
            }
            received
        })
    }
}

/// `expected` values from the previous process, `before`. A failed read means it is gone (the liveness
/// watch may say so first); a wrong count, that the processes are out of step.
fn receive(prev: &mut TcpStream, expected: usize, before: usize) -> CliResult<Vec<f32>> {
    let mut read = |buf: &mut [u8]| {
        if let Err(e) = prev.read_exact(buf) {
            exit_lost(before, format!("receiving from it: {e}"));
        }
    };
    let mut count = [0u8; 8];
    read(&mut count);
    let count = u64::from_le_bytes(count) as usize;
    if count != expected {
        return Err(failure(format!(
            "the previous process sent {count} values where {expected} were due: the processes are out of step"
        )));
    }
    let mut bytes = vec![0u8; 4 * count];
    read(&mut bytes);
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

fn failure(message: String) -> CliError {
    CliError::Runtime(format!("multi-process all-reduce: {message}"))
}

fn io(e: std::io::Error) -> CliError {
    failure(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rings of 2 and 3 processes as threads on localhost, each process holding `rank + i`
    /// (and a buffer shorter than the ring, so that some chunks are empty).
    #[test]
    fn the_ring_leaves_every_process_with_the_mean() {
        for (case, (world, len)) in [(2, 5), (3, 7), (3, 2)].into_iter().enumerate() {
            let port = (30000 + std::process::id() % 1000 * 20) as u16 + case as u16 * 5;
            let launches: Vec<Launch> = (0..world)
                .map(|rank| Launch {
                    rank,
                    processes: world,
                    local_rank: 0,
                    master: "127.0.0.1".into(),
                    port,
                })
                .collect();
            let bound: Vec<_> = launches.iter().map(|l| listen(l).unwrap()).collect();
            let addresses: Vec<SocketAddr> = bound.iter().map(|(_, a)| *a).collect();
            let results: Vec<Vec<f32>> = std::thread::scope(|scope| {
                let handles: Vec<_> = bound
                    .into_iter()
                    .zip(&launches)
                    .map(|((listener, _), launch)| {
                        let addresses = &addresses;
                        scope.spawn(move || {
                            let mut ring = Ring::connect(listener, launch, addresses).unwrap();
                            let mut values: Vec<f32> =
                                (0..len).map(|i| (launch.rank + i) as f32).collect();
                            ring.mean(&mut values).unwrap();
                            values
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let expected: Vec<f32> = (0..len)
                .map(|i| (0..world).map(|r| (r + i) as f32).sum::<f32>() / world as f32)
                .collect();
            for values in results {
                assert_eq!(values, expected, "world {world}, {len} values");
            }
        }
    }
}
