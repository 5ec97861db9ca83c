//! Where this process sits in a multi-process training run, read from the launcher's environment as
//! torchrun and Slurm set it, so the commands users already write start `popalign train` unchanged.
//!
//! - torchrun (and Kubernetes, mpirun wrappers, …): `WORLD_SIZE`, `RANK`, `MASTER_ADDR`, `MASTER_PORT`.
//! - Slurm (`srun`): `SLURM_NTASKS`, `SLURM_PROCID`, and the first host of `SLURM_NODELIST` as the master;
//!   `MASTER_ADDR`/`MASTER_PORT` override it when set.
//!
//! Each process trains on one device, as torchrun's one process per GPU (`cuda:LOCAL_RANK`). Ports, from
//! `MASTER_PORT` (default 29500, torchrun's): the rendezvous and liveness watch (rank 0) on
//! `MASTER_PORT + 1`, and process K's end of the all-reduce ring on `MASTER_PORT + 2 + K`, so that
//! several processes can share one machine. (`MASTER_PORT` itself is left free: the launcher may hold it.)

use std::net::{IpAddr, ToSocketAddrs, UdpSocket};

use crate::error::{CliResult, input};

/// torchrun's default port.
const DEFAULT_PORT: u16 = 29500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// This process's index, 0..processes.
    pub rank: usize,
    pub processes: usize,
    /// This process's index on its machine (`LOCAL_RANK`, `SLURM_LOCALID`; 0 when unset): its GPU.
    pub local_rank: usize,
    /// Host of rank 0, which runs the rendezvous and the liveness watch.
    pub master: String,
    pub port: u16,
}

impl Launch {
    /// The launch described by the environment; `None` for a single process (no launcher, or a world of 1).
    pub fn from_env() -> CliResult<Option<Self>> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> CliResult<Option<Self>> {
        let number = |name: &str| -> CliResult<Option<usize>> {
            var(name)
                .map(|v| {
                    v.trim()
                        .parse()
                        .map_err(|_| input(format!("{name}={v:?} is not a non-negative integer")))
                })
                .transpose()
        };
        let (processes, rank, slurm) = match (number("WORLD_SIZE")?, number("SLURM_NTASKS")?) {
            (Some(world), _) => (world, number("RANK")?, false),
            (None, Some(tasks)) => (tasks, number("SLURM_PROCID")?, true),
            (None, None) => return Ok(None),
        };
        if processes <= 1 {
            return Ok(None);
        }
        let which = if slurm { "SLURM_PROCID" } else { "RANK" };
        let rank =
            rank.ok_or_else(|| input(format!("{processes} processes but {which} is not set")))?;
        if rank >= processes {
            return Err(input(format!(
                "{which}={rank} is outside a world of {processes} processes"
            )));
        }
        let master = match (var("MASTER_ADDR"), var("SLURM_NODELIST"), slurm) {
            (Some(addr), _, _) => addr,
            (None, Some(list), true) => first_host(&list)?,
            _ => {
                return Err(input(format!(
                    "{processes} processes but MASTER_ADDR is not set"
                )));
            }
        };
        let port = match var("MASTER_PORT") {
            None => DEFAULT_PORT,
            Some(p) => p
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|&p| usize::from(p) + 2 + processes <= usize::from(u16::MAX))
                .ok_or_else(|| input(format!("MASTER_PORT={p:?} is not a usable port")))?,
        };
        let local_rank = number("LOCAL_RANK")?
            .or(number("SLURM_LOCALID")?)
            .unwrap_or(0);
        Ok(Some(Self {
            rank,
            processes,
            local_rank,
            master,
            port,
        }))
    }

    /// How many processes the environment's launcher started (1 without one).
    pub fn processes_from_env() -> CliResult<usize> {
        Ok(Self::from_env()?.map_or(1, |l| l.processes))
    }

    pub fn is_main(&self) -> bool {
        self.rank == 0
    }

    pub fn liveness_port(&self) -> u16 {
        self.port + 1
    }

    pub fn ring_port(&self) -> u16 {
        self.port + 2 + self.rank as u16
    }

    /// The address other processes reach this one at: the local address of the interface that routes to
    /// the master (a UDP `connect` sends nothing; it only picks the route).
    pub fn own_ip(&self) -> CliResult<IpAddr> {
        let master = (self.master.as_str(), self.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| input(format!("MASTER_ADDR {:?} does not resolve", self.master)))?;
        let unspecified: IpAddr = if master.is_ipv4() {
            [0, 0, 0, 0].into()
        } else {
            [0u16; 8].into()
        };
        UdpSocket::bind((unspecified, 0))
            .and_then(|s| s.connect(master).and_then(|()| s.local_addr()))
            .map(|a| a.ip())
            .map_err(|e| input(format!("no route to MASTER_ADDR {:?}: {e}", self.master)))
    }
}

/// The first host of a Slurm node list: `gpu[07-09,12],cpu3` → `gpu07`.
fn first_host(list: &str) -> CliResult<String> {
    let bad = || input(format!("SLURM_NODELIST={list:?} is not a Slurm node list"));
    let first = list
        .split(',')
        .next()
        .filter(|h| !h.is_empty())
        .ok_or_else(bad)?;
    let Some((prefix, range)) = first.split_once('[') else {
        return Ok(first.to_string());
    };
    let start = range
        .split(['-', ',', ']'])
        .next()
        .filter(|s| !s.is_empty())
        .ok_or_else(bad)?;
    Ok(format!("{prefix}{start}"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn launch(vars: &[(&str, &str)]) -> CliResult<Option<Launch>> {
        let vars: HashMap<_, _> = vars.iter().copied().collect();
        Launch::from_vars(|name| vars.get(name).map(|v| v.to_string()))
    }

    #[test]
    fn torchrun_variables_name_rank_world_and_master() {
        let l = launch(&[
            ("WORLD_SIZE", "4"),
            ("RANK", "2"),
            ("MASTER_ADDR", "node0"),
            ("MASTER_PORT", "1234"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            (l.rank, l.processes, l.master.as_str(), l.port),
            (2, 4, "node0", 1234)
        );
        assert_eq!((l.liveness_port(), l.ring_port()), (1235, 1238));
    }

    #[test]
    fn slurm_variables_take_the_first_host_as_master() {
        let l = launch(&[
            ("SLURM_NTASKS", "3"),
            ("SLURM_PROCID", "1"),
            ("SLURM_NODELIST", "gpu[07-09,12],cpu3"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            (l.rank, l.processes, l.master.as_str(), l.port),
            (1, 3, "gpu07", 29500)
        );
        assert_eq!(first_host("a1,b2").unwrap(), "a1");
    }

    #[test]
    fn one_process_or_no_launcher_is_a_single_process_run() {
        assert_eq!(launch(&[]).unwrap(), None);
        assert_eq!(launch(&[("WORLD_SIZE", "1"), ("RANK", "0")]).unwrap(), None);
        assert_eq!(launch(&[("SLURM_NTASKS", "1")]).unwrap(), None);
    }

    #[test]
    fn inconsistent_variables_are_named() {
        let message = |vars| launch(vars).unwrap_err().to_string();
        assert!(message(&[("WORLD_SIZE", "2")]).contains("RANK is not set"));
        assert!(
            message(&[("WORLD_SIZE", "2"), ("RANK", "2"), ("MASTER_ADDR", "h")])
                .contains("outside")
        );
        assert!(message(&[("WORLD_SIZE", "2"), ("RANK", "0")]).contains("MASTER_ADDR"));
        assert!(message(&[("WORLD_SIZE", "two")]).contains("WORLD_SIZE=\"two\""));
        assert!(
            message(&[
                ("WORLD_SIZE", "2"),
                ("RANK", "0"),
                ("MASTER_ADDR", "h"),
                ("MASTER_PORT", "x")
            ])
            .contains("MASTER_PORT")
        );
    }
}
