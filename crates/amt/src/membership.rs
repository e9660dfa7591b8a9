//! The IGMPv3 and MLDv2 datagrams AMT carries, from an SSM point of view.
//!
//! AMT encapsulates complete IP datagrams (RFC 7450 §5.1.4.8, §5.1.5.6): a Membership Query
//! carries an IPv4/IGMPv3 or IPv6/MLDv2 General Query, a Membership Update an IGMPv3 or MLDv2
//! report. The gateway plays the host side (RFC 7450 §4.2.1, a pseudo-interface toward the
//! relay), the relay the router side, per tunnel.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use mcast_wire::igmp::{self, RecordType};
use mcast_wire::{SourceGroup, mld};

/// Which membership protocol (and inner IP family) a query or report uses. The AMT Request's
/// P flag selects it: P = 0 asks for IPv4/IGMPv3, P = 1 for IPv6/MLDv2 (RFC 7450 §5.1.3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4, IGMPv3.
    V4,
    /// IPv6, MLDv2.
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(addr: &IpAddr) -> Family {
        if addr.is_ipv4() { Family::V4 } else { Family::V6 }
    }

    /// The family of an (S,G).
    pub fn of_sg(sg: &SourceGroup) -> Family {
        Family::of(&sg.group)
    }

    /// The Request's P flag for this family (RFC 7450 §5.1.3.4).
    pub fn p_flag(self) -> bool {
        self == Family::V6
    }

    /// The family a Request's P flag asks for.
    pub fn from_p_flag(p: bool) -> Family {
        if p { Family::V6 } else { Family::V4 }
    }
}

/// Why an encapsulated membership datagram was not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipError {
    /// The IP datagram or the IGMP/MLD message does not parse.
    Wire(mcast_wire::Error),
    /// A well-formed message of a kind that does not belong here (e.g. a report where a query
    /// was expected, or IGMPv2 where IGMPv3 is required for SSM).
    Unexpected(&'static str),
    /// The report does not fit the size limit even with one record (too many sources).
    TooLarge,
}

impl std::fmt::Display for MembershipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MembershipError::Wire(e) => write!(f, "bad encapsulated datagram: {e}"),
            MembershipError::Unexpected(what) => write!(f, "unexpected encapsulated message: {what}"),
            MembershipError::TooLarge => f.write_str("membership record too large"),
        }
    }
}

impl std::error::Error for MembershipError {}

impl From<mcast_wire::Error> for MembershipError {
    fn from(e: mcast_wire::Error) -> Self {
        MembershipError::Wire(e)
    }
}

/// The Query Interval used when QQIC is zero, and the IGMPv3/MLDv2 default (RFC 3376 §8.2,
/// RFC 3810 §9.2): 125 s.
pub const DEFAULT_QUERY_INTERVAL: Duration = Duration::from_secs(125);
/// The default Robustness Variable (RFC 3376 §8.1, RFC 3810 §9.1).
pub const DEFAULT_ROBUSTNESS: u8 = 2;

/// What a gateway needs from the General Query inside a Membership Query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryInfo {
    /// Family of the query (must match the Request's P flag).
    pub family: Family,
    /// Querier's Robustness Variable; 0 means the default, 2 (RFC 3376 §4.1.6).
    pub robustness: u8,
    /// Querier's Query Interval from QQIC: when to start the next Request/Query exchange
    /// (RFC 7450 §5.2.3.5). Zero QQIC means the 125 s default.
    pub query_interval: Duration,
    /// Maximum Response Delay.
    pub max_response: Duration,
}

/// Parses the General Query a relay encapsulates. The inner source address is not checked:
/// relays send 0.0.0.0 or `::` (protocols.md §A1, Linux and js4ms do).
pub fn parse_query(datagram: &[u8]) -> Result<QueryInfo, MembershipError> {
    match datagram.first().map(|b| b >> 4) {
        Some(4) => {
            let (_, repr) = igmp::parse_datagram(datagram)?;
            let igmp::Repr::QueryV3(query) = repr else {
                return Err(MembershipError::Unexpected("IGMP message that is not an IGMPv3 query"));
            };
            Ok(QueryInfo {
                family: Family::V4,
                robustness: if query.qrv == 0 { DEFAULT_ROBUSTNESS } else { query.qrv },
                query_interval: interval(igmp::decode_code8(query.qqic)),
                max_response: Duration::from_millis(u64::from(igmp::decode_code8(query.max_resp_code)) * 100),
            })
        }
        Some(6) => {
            let (_, repr) = mld::parse_datagram(datagram)?;
            let mld::Repr::QueryV2(query) = repr else {
                return Err(MembershipError::Unexpected("MLD message that is not an MLDv2 query"));
            };
            Ok(QueryInfo {
                family: Family::V6,
                robustness: if query.qrv == 0 { DEFAULT_ROBUSTNESS } else { query.qrv },
                query_interval: interval(igmp::decode_code8(query.qqic)),
                max_response: Duration::from_millis(u64::from(mld::decode_code16(query.max_resp_code))),
            })
        }
        Some(v) => Err(MembershipError::Wire(mcast_wire::Error::BadVersion(v))),
        None => Err(MembershipError::Wire(mcast_wire::Error::Truncated)),
    }
}

fn interval(seconds: u32) -> Duration {
    if seconds == 0 { DEFAULT_QUERY_INTERVAL } else { Duration::from_secs(u64::from(seconds)) }
}

/// Builds the General Query datagram a relay puts in a Membership Query: IPv4 with Router
/// Alert and IGMPv3, or IPv6 with the Hop-by-Hop Router Alert and MLDv2, from source 0.0.0.0
/// / `::` like the Linux relay, with the query interval and robustness the relay wants the
/// gateway to use.
pub fn general_query(
    family: Family,
    query_interval: Duration,
    robustness: u8,
    max_response: Duration,
) -> Result<Vec<u8>, MembershipError> {
    let qqic = igmp::encode_code8(query_interval.as_secs().min(u64::from(u32::MAX)) as u32);
    let qrv = robustness.min(7);
    match family {
        Family::V4 => {
            let mrc = igmp::encode_code8((max_response.as_millis() / 100).min(u128::from(u32::MAX)) as u32);
            let repr = igmp::Repr::QueryV3(igmp::QueryV3::general(mrc, qrv, qqic));
            Ok(igmp::datagram(Ipv4Addr::UNSPECIFIED, &repr)?)
        }
        Family::V6 => {
            let mrc = mld::encode_code16(max_response.as_millis().min(u128::from(u32::MAX)) as u32);
            let repr = mld::Repr::QueryV2(mld::QueryV2::general(mrc, qrv, qqic));
            Ok(mld::datagram(Ipv6Addr::UNSPECIFIED, &repr)?)
        }
    }
}

/// One group record of a report, family-independent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    /// The record type (RFC 3376 §4.2.12; the same values in MLDv2).
    pub record_type: RecordType,
    /// The multicast group.
    pub group: IpAddr,
    /// The sources.
    pub sources: Vec<IpAddr>,
}

/// Parses the report inside a Membership Update into its records. IGMPv3/MLDv2 only: an
/// IGMPv1/v2 or MLDv1 report cannot express a source, so it is `Unexpected` for SSM.
pub fn parse_report(datagram: &[u8]) -> Result<(Family, Vec<GroupRecord>), MembershipError> {
    match datagram.first().map(|b| b >> 4) {
        Some(4) => match igmp::parse_datagram(datagram)?.1 {
            igmp::Repr::ReportV3(report) => Ok((
                Family::V4,
                report
                    .records
                    .into_iter()
                    .map(|r| GroupRecord {
                        record_type: r.record_type,
                        group: IpAddr::V4(r.group),
                        sources: r.sources.into_iter().map(IpAddr::V4).collect(),
                    })
                    .collect(),
            )),
            _ => Err(MembershipError::Unexpected("IGMP message that is not an IGMPv3 report")),
        },
        Some(6) => match mld::parse_datagram(datagram)?.1 {
            mld::Repr::ReportV2(report) => Ok((
                Family::V6,
                report
                    .records
                    .into_iter()
                    .map(|r| GroupRecord {
                        record_type: r.record_type,
                        group: IpAddr::V6(r.group),
                        sources: r.sources.into_iter().map(IpAddr::V6).collect(),
                    })
                    .collect(),
            )),
            _ => Err(MembershipError::Unexpected("MLD message that is not an MLDv2 report")),
        },
        Some(v) => Err(MembershipError::Wire(mcast_wire::Error::BadVersion(v))),
        None => Err(MembershipError::Wire(mcast_wire::Error::Truncated)),
    }
}

/// Largest encapsulated report we build, so that AMT + UDP + IP headers still fit a 1500-byte
/// path without fragmentation (RFC 7450 §6.6 warns about fragmentation of AMT messages).
pub const MAX_REPORT_DATAGRAM: usize = 1400;

/// Builds the report datagrams (as many as needed to stay under `max_datagram` bytes each)
/// that announce `records`: records are kept whole when possible and split by sources when a
/// single record is too large. Sources of a record are grouped per group by the caller.
pub fn report_datagrams(
    family: Family,
    records: &[GroupRecord],
    max_datagram: usize,
) -> Result<Vec<Vec<u8>>, MembershipError> {
    // Fixed overhead: IPv4 24 (with Router Alert) + IGMP report header 8; IPv6 40 + HBH 8 +
    // MLD report header 8. Record header: 8 (IPv4) / 20 (IPv6); each source 4 / 16.
    let (overhead, record_header, source_len) = match family {
        Family::V4 => (24 + 8, 8, 4),
        Family::V6 => (40 + 8 + 8, 20, 16),
    };
    let room = max_datagram.checked_sub(overhead + record_header).ok_or(MembershipError::TooLarge)?;
    let max_sources = room / source_len;
    if max_sources == 0 {
        return Err(MembershipError::TooLarge);
    }
    // Split records with too many sources, then pack records into datagrams.
    let mut pieces: Vec<GroupRecord> = Vec::new();
    for record in records {
        if Family::of(&record.group) != family {
            return Err(MembershipError::Unexpected("record of the other address family"));
        }
        if record.sources.is_empty() {
            pieces.push(record.clone());
        }
        for chunk in record.sources.chunks(max_sources) {
            pieces.push(GroupRecord { record_type: record.record_type, group: record.group, sources: chunk.to_vec() });
        }
    }
    let mut datagrams = Vec::new();
    let mut batch: Vec<GroupRecord> = Vec::new();
    let mut size = overhead;
    for piece in pieces {
        let piece_len = record_header + piece.sources.len() * source_len;
        if !batch.is_empty() && size + piece_len > max_datagram {
            datagrams.push(build_report(family, std::mem::take(&mut batch))?);
            size = overhead;
        }
        size += piece_len;
        batch.push(piece);
    }
    if !batch.is_empty() {
        datagrams.push(build_report(family, batch)?);
    }
    Ok(datagrams)
}

fn build_report(family: Family, records: Vec<GroupRecord>) -> Result<Vec<u8>, MembershipError> {
    match family {
        Family::V4 => {
            let records = records
                .into_iter()
                .map(|r| {
                    let group = match r.group {
                        IpAddr::V4(g) => g,
                        IpAddr::V6(_) => return Err(MembershipError::Unexpected("IPv6 group in an IGMP report")),
                    };
                    let sources = r
                        .sources
                        .into_iter()
                        .map(|s| match s {
                            IpAddr::V4(s) => Ok(s),
                            IpAddr::V6(_) => Err(MembershipError::Unexpected("IPv6 source in an IGMP report")),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(igmp::GroupRecord::new(r.record_type, group, sources))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(igmp::datagram(Ipv4Addr::UNSPECIFIED, &igmp::Repr::ReportV3(igmp::ReportV3::new(records)))?)
        }
        Family::V6 => {
            let records = records
                .into_iter()
                .map(|r| {
                    let group = match r.group {
                        IpAddr::V6(g) => g,
                        IpAddr::V4(_) => return Err(MembershipError::Unexpected("IPv4 group in an MLD report")),
                    };
                    let sources = r
                        .sources
                        .into_iter()
                        .map(|s| match s {
                            IpAddr::V6(s) => Ok(s),
                            IpAddr::V4(_) => Err(MembershipError::Unexpected("IPv4 source in an MLD report")),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(mld::AddressRecord::new(r.record_type, group, sources))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(mld::datagram(Ipv6Addr::UNSPECIFIED, &mld::Repr::ReportV2(mld::ReportV2::new(records)))?)
        }
    }
}

/// Groups (S,G)s into records of one type, one record per group with its sources, sorted.
pub fn records_for(record_type: RecordType, sgs: impl IntoIterator<Item = SourceGroup>) -> Vec<GroupRecord> {
    let mut by_group: std::collections::BTreeMap<IpAddr, Vec<IpAddr>> = std::collections::BTreeMap::new();
    for sg in sgs {
        by_group.entry(sg.group).or_default().push(sg.source);
    }
    by_group
        .into_iter()
        .map(|(group, mut sources)| {
            sources.sort();
            sources.dedup();
            GroupRecord { record_type, group, sources }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sg(text: &str) -> SourceGroup {
        text.parse().unwrap()
    }

    #[test]
    fn parses_the_linux_style_query_sample() {
        // The encapsulated query of the AMT Membership Query sample (protocols.md §A1).
        let datagram = hex::decode("46c0002400000000010219dec6336401e0000001940400001164ec1e00000000027d0000").unwrap();
        let info = parse_query(&datagram).unwrap();
        assert_eq!(info.family, Family::V4);
        assert_eq!(info.robustness, 2);
        assert_eq!(info.query_interval, Duration::from_secs(125));
        assert_eq!(info.max_response, Duration::from_secs(10));
    }

    #[test]
    fn general_queries_round_trip_both_families() {
        for family in [Family::V4, Family::V6] {
            let datagram = general_query(family, Duration::from_secs(60), 3, Duration::from_secs(1)).unwrap();
            let info = parse_query(&datagram).unwrap();
            assert_eq!(info.family, family);
            assert_eq!(info.query_interval, Duration::from_secs(60));
            assert_eq!(info.robustness, 3);
            assert_eq!(info.max_response, Duration::from_secs(1));
        }
        // Long intervals are encoded in QQIC's floating-point form, rounded down.
        let datagram = general_query(Family::V4, Duration::from_secs(300), 2, Duration::from_secs(10)).unwrap();
        let qi = parse_query(&datagram).unwrap().query_interval;
        assert!(qi <= Duration::from_secs(300) && qi >= Duration::from_secs(280), "{qi:?}");
    }

    #[test]
    fn zero_qqic_means_the_default_interval() {
        let repr = igmp::Repr::QueryV3(igmp::QueryV3::general(100, 2, 0));
        let datagram = igmp::datagram(Ipv4Addr::UNSPECIFIED, &repr).unwrap();
        assert_eq!(parse_query(&datagram).unwrap().query_interval, DEFAULT_QUERY_INTERVAL);
    }

    #[test]
    fn report_sample_parses_into_records() {
        // The encapsulated report of the AMT Membership Update sample (protocols.md §A1).
        let datagram = hex::decode(
            "46c0002c0000000001024 3f600000000e000001694040000 22001f2200000001 05000001e801010117d4b904"
                .replace(' ', ""),
        )
        .unwrap();
        let (family, records) = parse_report(&datagram).unwrap();
        assert_eq!(family, Family::V4);
        assert_eq!(
            records,
            [GroupRecord {
                record_type: RecordType::AllowNewSources,
                group: "232.1.1.1".parse().unwrap(),
                sources: vec!["23.212.185.4".parse().unwrap()],
            }]
        );
    }

    #[test]
    fn reports_round_trip_and_split_under_the_size_limit() {
        let sgs: Vec<SourceGroup> =
            (0..300u32).map(|i| sg(&format!("198.51.100.{},232.1.{}.{}", i % 7 + 1, i / 256, i % 256))).collect();
        let records = records_for(RecordType::ModeIsInclude, sgs.iter().copied());
        assert_eq!(records.len(), 300);
        let datagrams = report_datagrams(Family::V4, &records, MAX_REPORT_DATAGRAM).unwrap();
        assert!(datagrams.len() > 1);
        let mut seen = Vec::new();
        for d in &datagrams {
            assert!(d.len() <= MAX_REPORT_DATAGRAM, "{}", d.len());
            let (_, recs) = parse_report(d).unwrap();
            for r in recs {
                for s in r.sources {
                    seen.push(SourceGroup::new(s, r.group));
                }
            }
        }
        seen.sort();
        let mut want = sgs.clone();
        want.sort();
        assert_eq!(seen, want);
    }

    #[test]
    fn a_record_with_many_sources_is_split() {
        let sgs: Vec<SourceGroup> = (0..1000u32)
            .map(|i| {
                SourceGroup::new(
                    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16 + 1)),
                    "ff3e::1".parse().unwrap(),
                )
            })
            .collect();
        let records = records_for(RecordType::AllowNewSources, sgs);
        let datagrams = report_datagrams(Family::V6, &records, MAX_REPORT_DATAGRAM).unwrap();
        let mut total = 0;
        for d in &datagrams {
            assert!(d.len() <= MAX_REPORT_DATAGRAM);
            let (family, recs) = parse_report(d).unwrap();
            assert_eq!(family, Family::V6);
            total += recs.iter().map(|r| r.sources.len()).sum::<usize>();
        }
        assert_eq!(total, 1000);
    }

    #[test]
    fn rejects_what_does_not_belong() {
        let query = general_query(Family::V4, Duration::from_secs(125), 2, Duration::from_secs(10)).unwrap();
        assert_eq!(parse_report(&query), Err(MembershipError::Unexpected("IGMP message that is not an IGMPv3 report")));
        let records = records_for(RecordType::AllowNewSources, [sg("198.51.100.1,232.1.1.1")]);
        let report = report_datagrams(Family::V4, &records, MAX_REPORT_DATAGRAM).unwrap().remove(0);
        assert!(matches!(parse_query(&report), Err(MembershipError::Unexpected(_))));
        assert!(matches!(parse_query(&[]), Err(MembershipError::Wire(_))));
        assert!(report_datagrams(Family::V6, &records, MAX_REPORT_DATAGRAM).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse_query(&bytes);
            let _ = parse_report(&bytes);
        }
    }
}
