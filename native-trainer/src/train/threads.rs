//! All-reduce between the worker threads of one process (one thread per device, `[train] devices`).
//!
//! Every worker leaves a copy of its buffer; the last to arrive sums the copies in rank order and divides by
//! the number of workers, and every worker copies that mean back. So all workers hold the same bits, and a
//! run's result does not depend on which thread came first. Two workers give `(a + b) / 2`, what
//! burn-collective's local mode computed before (its sum, then a division).
//!
//! Why not burn-collective's local mode: it brought an async runtime and a web stack (tokio, axum, hyper,
//! tungstenite) into every build for what is a barrier and a sum, and the processes' ring (`ring.rs`)
//! already works on float32 buffers, so both paths now flatten the gradients the same way.
//!
//! A worker that stops (an error, a panic) leaves the group when its [`Member`] is dropped; a worker waiting
//! for it then gets an error instead of waiting forever.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::error::{CliError, CliResult};

pub struct Group {
    world: usize,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// This round's buffers, by rank.
    buffers: Vec<Option<Vec<f32>>>,
    /// The round's mean (or why there is none), once every worker has arrived.
    mean: Option<Result<Vec<f32>, String>>,
    /// Workers yet to copy the mean back; the next round starts at zero.
    unread: usize,
    /// A worker that has left.
    gone: Option<usize>,
}

/// One worker's place in a [`Group`].
pub struct Member {
    pub rank: usize,
    group: Arc<Group>,
}

impl Group {
    /// The members of a new group of `world` threads, by rank.
    pub fn members(world: usize) -> Vec<Member> {
        let group = Arc::new(Self {
            world,
            state: Mutex::new(State {
                buffers: vec![None; world],
                ..State::default()
            }),
            changed: Condvar::new(),
        });
        (0..world)
            .map(|rank| Member {
                rank,
                group: group.clone(),
            })
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A worker that panicked while holding the lock left the state consistent (no panics inside).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(
        &self,
        state: MutexGuard<'a, State>,
        until: impl Fn(&State) -> bool,
    ) -> MutexGuard<'a, State> {
        self.changed
            .wait_while(state, |s| !until(s) && s.gone.is_none())
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl Member {
    pub fn world(&self) -> usize {
        self.group.world
    }

    /// Replaces `values` by their element-wise mean over the group's workers.
    pub fn mean(&self, values: &mut [f32]) -> CliResult {
        let group = &*self.group;
        // The previous round ends when every worker has copied its mean back.
        let mut state = group.wait(group.lock(), |s| s.unread == 0);
        if state.unread != 0 {
            return Err(left(&state));
        }
        state.buffers[self.rank] = Some(values.to_vec());
        if state.buffers.iter().all(Option::is_some) {
            let buffers: Vec<Vec<f32>> = state.buffers.iter_mut().flat_map(Option::take).collect();
            state.mean = Some(sum_in_rank_order(buffers));
            state.unread = group.world;
            group.changed.notify_all();
        }
        let mut state = group.wait(state, |s| s.mean.is_some());
        let copied = match &state.mean {
            Some(Ok(mean)) => {
                values.copy_from_slice(mean);
                Ok(())
            }
            Some(Err(message)) => Err(failure(message.clone())),
            None => return Err(left(&state)),
        };
        state.unread -= 1;
        if state.unread == 0 {
            state.mean = None;
            group.changed.notify_all();
        }
        copied
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let mut state = self.group.lock();
        state.gone.get_or_insert(self.rank);
        self.group.changed.notify_all();
    }
}

/// `Σ buffers / n`, summed in rank order; an error when the workers' buffers differ in length.
fn sum_in_rank_order(buffers: Vec<Vec<f32>>) -> Result<Vec<f32>, String> {
    let mut buffers = buffers.into_iter();
    let mut sum = buffers.next().unwrap_or_default();
    let n = 1 + buffers.len();
    for (rank, buffer) in buffers.enumerate() {
        if buffer.len() != sum.len() {
            return Err(format!(
                "worker {} sent {} values where worker 0 sent {}: the workers are out of step",
                rank + 1,
                buffer.len(),
                sum.len()
            ));
        }
        sum.iter_mut().zip(buffer).for_each(|(s, v)| *s += v);
    }
    sum.iter_mut().for_each(|s| *s /= n as f32);
    Ok(sum)
}

/// Why a wait ended without a mean: the waits end early only when a worker has left.
fn left(state: &State) -> CliError {
    let gone = state
        .gone
        .expect("a wait ended early without a worker gone");
    failure(format!("worker {gone} stopped before this all-reduce"))
}

fn failure(message: String) -> CliError {
    CliError::Runtime(format!("data-parallel all-reduce: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three workers, several rounds back to back (a fast worker must not overtake a slow one's read).
    #[test]
    fn every_worker_gets_the_mean_of_every_round() {
        let results: Vec<Vec<Vec<f32>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = Group::members(3)
                .into_iter()
                .map(|member| {
                    scope.spawn(move || {
                        (0..50)
                            .map(|round| {
                                let mut values = vec![(member.rank * round) as f32, 1.0];
                                member.mean(&mut values).unwrap();
                                values
                            })
                            .collect()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for rounds in &results {
            for (round, values) in rounds.iter().enumerate() {
                assert_eq!(values, &[(round + 2 * round) as f32 / 3.0, 1.0]);
            }
        }
    }

    #[test]
    fn a_worker_that_stops_or_sends_another_length_fails_the_others() {
        let mut members = Group::members(2);
        drop(members.pop());
        let error = members[0].mean(&mut [1.0]).unwrap_err().to_string();
        assert!(error.contains("worker 1 stopped"), "{error}");

        let results: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = Group::members(2)
                .into_iter()
                .map(|member| {
                    scope.spawn(move || {
                        let mut values = vec![0.0; 2 + member.rank];
                        member.mean(&mut values).unwrap_err().to_string()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for error in results {
            assert!(error.contains("out of step"), "{error}");
        }
    }
}
