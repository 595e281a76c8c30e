//! Running `tcptrack -T` on captures of generated sessions, and checking a record against the
//! session it came from.

use std::time::Duration;

use crate::{assert_counts, json_of, rfc3339, CaptureSpec, Format, Link, Packet, Record, Session};

/// A client and a server endpoint of the generated sessions.
pub const C4: &str = "198.18.0.1:40000";
/// The server of the generated sessions.
pub const S4: &str = "198.18.0.2:80";

/// `n` milliseconds.
#[must_use]
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The frames of every session on `link`, in time order.
#[must_use]
pub fn merged(link: Link, sessions: &[&Session]) -> Vec<Packet> {
    let mut all: Vec<Packet> = sessions.iter().flat_map(|s| s.packets(link)).collect();
    all.sort_by_key(|p| p.ts);
    all
}

/// `tcptrack -T <pcap of the sessions on link> --output json extra...`.
#[track_caller]
pub fn run_on(link: Link, sessions: &[&Session], extra: &[&str]) -> Vec<Record> {
    let cap = CaptureSpec::new(Format::Pcap, link.linktype()).write(&merged(link, sessions));
    let file = cap.file();
    json_of(file.path(), extra)
}

/// [`run_on`] Ethernet, without options.
#[track_caller]
pub fn run(sessions: &[&Session]) -> Vec<Record> {
    run_on(Link::Ethernet, sessions, &[])
}

/// The one record of `recs`.
#[track_caller]
pub fn only(recs: &[Record]) -> &Record {
    assert_eq!(recs.len(), 1, "expected one connection: {recs:#?}");
    &recs[0]
}

/// `rec` is session `s` seen on `link`: its ends (the session's client as client), `state`, every
/// counter, first and last seen.
#[track_caller]
pub fn assert_session(rec: &Record, s: &Session, link: Link, state: &str) {
    assert_eq!(
        (rec.client.as_str(), rec.server.as_str()),
        (
            s.client().to_string().as_str(),
            s.server().to_string().as_str()
        ),
        "ends"
    );
    assert_eq!(
        rec.state, state,
        "state of {} -> {}",
        rec.client, rec.server
    );
    assert_counts(rec, &s.expected(link));
    let (first, last) = s.first_last();
    assert_eq!(rec.first_seen, rfc3339(first), "first_seen");
    assert_eq!(rec.last_seen, rfc3339(last), "last_seen");
}
