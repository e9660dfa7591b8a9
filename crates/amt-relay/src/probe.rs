//! `amt-relay probe`: a scripted AMT gateway for checking a relay (ours or another) from the
//! command line and for lab scenarios.
//!
//! * `normal`: (Discovery →) Request → Query → Update ALLOW for the (S,G)s, then counts the
//!   Multicast Data that arrives from the relay address (refreshing the membership every
//!   query interval), and leaves (BLOCK) at the end.
//! * `forged-mac`: the Update carries a wrong Response MAC; a correct relay sends nothing.
//! * `replayed`: joins and leaves properly over two Request cycles, then replays the first
//!   cycle's ALLOW Update; a correct relay sends nothing after the replay.
//!
//! It prints a JSON summary and exits 0 when the number of Data datagrams received (after the
//! replay, in `replayed` mode) is within `--min`..`--max`.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use mcast_amt::membership::{self, Family};
use mcast_wire::SourceGroup;
use mcast_wire::amt::{self, Repr};
use mcast_wire::igmp::RecordType;
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// A well-behaved gateway.
    Normal,
    /// Update with a wrong Response MAC.
    ForgedMac,
    /// Replay of an Update from an earlier Request cycle, after leaving.
    Replayed,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The relay's unicast address.
    #[arg(long, value_name = "ADDR")]
    pub relay: IpAddr,
    /// Send a Relay Discovery here first and use the advertised relay address.
    #[arg(long, value_name = "ADDR")]
    pub discovery: Option<IpAddr>,
    /// The relay's UDP port.
    #[arg(long, value_name = "PORT", default_value_t = amt::PORT)]
    pub port: u16,
    /// Local address and port to bind (default: any, an ephemeral port).
    #[arg(long, value_name = "ADDR:PORT")]
    pub local: Option<SocketAddr>,
    /// What to do.
    #[arg(long, value_enum, default_value_t = Mode::Normal)]
    pub mode: Mode,
    /// How long to listen for Data.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Stop early once this many Data datagrams arrived (0: listen for the whole duration).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub count: u64,
    /// Succeed only if at least this many Data datagrams arrived.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub min: u64,
    /// Succeed only if at most this many Data datagrams arrived.
    #[arg(long, value_name = "N")]
    pub max: Option<u64>,
    /// The (S,G)s to join.
    #[arg(value_name = "S,G", required = true)]
    pub sgs: Vec<SourceGroup>,
}

struct Probe {
    socket: UdpSocket,
    relay: SocketAddr,
    family: Family,
    next_nonce: u32,
}

struct Query {
    mac: [u8; 6],
    nonce: u32,
    interval: Duration,
    limit: bool,
}

impl Probe {
    fn recv_control(&self, deadline: Instant) -> anyhow::Result<(SocketAddr, Vec<u8>)> {
        let mut buf = vec![0u8; 65_536];
        while Instant::now() < deadline {
            self.socket.set_read_timeout(Some(
                deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)),
            ))?;
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) if amt::parse_data(&buf[..n]).is_none() => return Ok((from, buf[..n].to_vec())),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => return Err(e.into()),
            }
        }
        bail!("no answer from the relay")
    }

    fn request(&mut self) -> anyhow::Result<Query> {
        self.next_nonce = self.next_nonce.wrapping_add(1);
        let nonce = self.next_nonce;
        for _attempt in 0..3 {
            self.socket.send_to(&Repr::Request { nonce, p_flag: self.family.p_flag() }.to_vec()?, self.relay)?;
            let deadline = Instant::now() + Duration::from_secs(1);
            while let Ok((from, payload)) = self.recv_control(deadline) {
                if from != self.relay {
                    continue;
                }
                if let Ok(Repr::MembershipQuery { limit, mac, nonce: n, query, .. }) = Repr::parse_bytes(&payload)
                    && n == nonce
                {
                    let interval =
                        membership::parse_query(query).map(|q| q.query_interval).unwrap_or(Duration::from_secs(125));
                    return Ok(Query { mac, nonce, interval, limit });
                }
            }
        }
        bail!("no Membership Query for Request nonce {nonce:#010x} from {}", self.relay)
    }

    fn update_payloads(
        &self,
        mac: [u8; 6],
        nonce: u32,
        kind: RecordType,
        sgs: &[SourceGroup],
    ) -> anyhow::Result<Vec<Vec<u8>>> {
        let records = membership::records_for(kind, sgs.iter().copied());
        let reports = membership::report_datagrams(self.family, &records, membership::MAX_REPORT_DATAGRAM)?;
        reports.iter().map(|r| Ok(Repr::MembershipUpdate { mac, nonce, update: r }.to_vec()?)).collect()
    }

    fn send_all(&self, payloads: &[Vec<u8>]) -> anyhow::Result<()> {
        for p in payloads {
            self.socket.send_to(p, self.relay)?;
        }
        Ok(())
    }

    /// Counts Data from the relay until `until` or `count`; refreshes the membership every
    /// query interval when `refresh` is given.
    fn listen(
        &mut self,
        until: Instant,
        count: u64,
        mut refresh: Option<(&[SourceGroup], Instant)>,
    ) -> anyhow::Result<(u64, u64, Option<Duration>)> {
        let started = Instant::now();
        let mut buf = vec![0u8; 65_536];
        let (mut data, mut foreign, mut first) = (0u64, 0u64, None);
        while Instant::now() < until && (count == 0 || data < count) {
            if let Some((sgs, due)) = refresh
                && Instant::now() >= due
            {
                let q = self.request()?;
                self.send_all(&self.update_payloads(q.mac, q.nonce, RecordType::ModeIsInclude, sgs)?)?;
                refresh = Some((sgs, Instant::now() + q.interval));
            }
            self.socket.set_read_timeout(Some(Duration::from_millis(50)))?;
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    if amt::parse_data(&buf[..n]).is_some() {
                        if from == self.relay {
                            data += 1;
                            first.get_or_insert(started.elapsed());
                        } else {
                            foreign += 1;
                        }
                    }
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok((data, foreign, first))
    }
}

pub fn run(args: ProbeArgs) -> anyhow::Result<()> {
    let family = Family::of_sg(&args.sgs[0]);
    if args.sgs.iter().any(|sg| Family::of_sg(sg) != family) {
        bail!("all (S,G)s must be of one family");
    }
    let local = args.local.unwrap_or_else(|| match args.relay {
        IpAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        IpAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    });
    let socket = UdpSocket::bind(local).with_context(|| format!("binding {local}"))?;
    let mut probe = Probe { socket, relay: SocketAddr::new(args.relay, args.port), family, next_nonce: rand::random() };
    let start = Instant::now();

    let mut advertised = None;
    if let Some(discovery) = args.discovery {
        let to = SocketAddr::new(discovery, args.port);
        let nonce: u32 = rand::random();
        probe.socket.send_to(&Repr::RelayDiscovery { nonce }.to_vec()?, to)?;
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let (from, payload) = probe.recv_control(deadline).context("no Relay Advertisement")?;
            if let Ok(Repr::RelayAdvertisement { nonce: n, relay }) = Repr::parse_bytes(&payload)
                && n == nonce
                && from == to
            {
                advertised = Some(relay);
                probe.relay = SocketAddr::new(relay, args.port);
                break;
            }
        }
    }

    let until = start + args.duration;
    let summary = match args.mode {
        Mode::Normal => {
            let q = probe.request()?;
            probe.send_all(&probe.update_payloads(q.mac, q.nonce, RecordType::AllowNewSources, &args.sgs)?)?;
            let (data, foreign, first) =
                probe.listen(until, args.count, Some((&args.sgs, Instant::now() + q.interval)))?;
            // Leave with the nonce of the current cycle.
            let q = probe.request()?;
            probe.send_all(&probe.update_payloads(q.mac, q.nonce, RecordType::BlockOldSources, &args.sgs)?)?;
            json!({ "mode": "normal", "limit": q.limit, "data": data, "foreign_data": foreign,
                    "first_data_ms": first.map(|d| d.as_millis() as u64) })
        }
        Mode::ForgedMac => {
            let q = probe.request()?;
            let mut mac = q.mac;
            for b in &mut mac {
                *b ^= 0xa5;
            }
            probe.send_all(&probe.update_payloads(mac, q.nonce, RecordType::AllowNewSources, &args.sgs)?)?;
            let (data, foreign, first) = probe.listen(until, args.count, None)?;
            json!({ "mode": "forged-mac", "data": data, "foreign_data": foreign,
                    "first_data_ms": first.map(|d| d.as_millis() as u64) })
        }
        Mode::Replayed => {
            let q1 = probe.request()?;
            let old = probe.update_payloads(q1.mac, q1.nonce, RecordType::AllowNewSources, &args.sgs)?;
            probe.send_all(&old)?;
            let (before, _, _) = probe.listen(Instant::now() + Duration::from_millis(500), 0, None)?;
            let q2 = probe.request()?;
            probe.send_all(&probe.update_payloads(q2.mac, q2.nonce, RecordType::BlockOldSources, &args.sgs)?)?;
            // Let in-flight Data drain, then replay the first cycle's ALLOW.
            probe.listen(Instant::now() + Duration::from_millis(300), 0, None)?;
            probe.send_all(&old)?;
            let (data, foreign, first) =
                probe.listen(until.max(Instant::now() + Duration::from_millis(500)), args.count, None)?;
            json!({ "mode": "replayed", "data_before_leave": before, "data": data, "foreign_data": foreign,
                    "first_data_ms": first.map(|d| d.as_millis() as u64) })
        }
    };
    let mut summary = summary;
    summary["relay"] = json!(probe.relay.to_string());
    summary["advertised"] = json!(advertised.map(|a| a.to_string()));
    summary["local"] = json!(probe.socket.local_addr()?.to_string());
    println!("{summary}");
    let data = summary["data"].as_u64().unwrap_or(0);
    if data < args.min || args.max.is_some_and(|max| data > max) {
        bail!(
            "{data} Data datagrams received, expected {}..{}",
            args.min,
            args.max.map_or("".to_owned(), |m| m.to_string())
        );
    }
    Ok(())
}
