//! The two renderings of one Report, against a quick run's files as the report was written
//! before it was one struct: `quick.md` verbatim; `quick.json` with `live_seconds` added, and
//! one live `gbits` a digit shorter (serde_json's default float parsing, which reads the
//! fixture, is not exact to the last bit: 18.675028608012674 came back as 18.67502860801267).
//! The scale section (and its targets) comes from a later quick run of that case alone
//! (`--only scale`), spliced into both files. The throughput targets were reworded (1.5x the
//! bare loop, met or not) and `concurrent` added when the case grew a second capture.

use super::{pps, Cost, Memory, Report, Throughput};

const MD: &str = include_str!("quick.md");
const JSON: &str = include_str!("quick.json");

fn report() -> Report {
    serde_json::from_str(JSON).expect("the fixture is a Report")
}

#[test]
fn json_is_written_as_it_was() {
    assert_eq!(report().json().expect("serialise"), JSON);
}

#[test]
fn markdown_is_written_as_it_was() {
    assert_eq!(report().to_string(), MD);
}

#[test]
fn derived_figures_come_from_the_costs() {
    let r = report();
    let t = r.throughput.as_ref().expect("the fixture has throughput");
    let again = Throughput::new(
        r.packets,
        (t.connections, t.concurrent),
        [t.tcptrack, t.bare_libpcap, t.tshark, t.classic],
    );
    assert_eq!(&again, t);
    let m = r.memory.as_ref().expect("the fixture has memory");
    let again = Memory::new(
        m.connections,
        (m.tcptrack, m.tcptrack_baseline),
        (m.classic, m.classic_baseline),
    );
    assert_eq!(&again, m);
}

#[test]
fn no_cpu_time_is_not_a_division_by_zero() {
    let zero = Cost {
        cpu_s: 0.0,
        peak_rss_kib: 0,
        wall_s: 0.0,
    };
    assert!(pps(1_000, zero.cpu_s).is_finite());
}

#[test]
fn a_run_of_some_cases_holds_only_their_sections() {
    let whole = report();
    let only = Report {
        idle_screen: None,
        kernel_cost_ns: None,
        live: Vec::new(),
        memory: None,
        throughput: None,
        throughput_many: None,
        ..whole.clone()
    };
    let md = only.to_string();
    let (section, targets) = md.split_once("\nTargets: ").expect("a targets line");
    assert!(section.starts_with("## Many real connections"), "{md}");
    assert!(
        MD.contains(section),
        "the section differs from the whole report's:\n{md}"
    );
    assert!(targets.starts_with("60,000 idle under 0.5%"), "{targets}");
    let json = only.json().expect("serialise");
    assert!(
        !json.contains("\"throughput\"") && !json.contains("\"live\""),
        "{json}"
    );
    let back: Report = serde_json::from_str(&json).expect("read back");
    assert_eq!(back, only);
}
