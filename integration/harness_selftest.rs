//! Property: the history checker the end-to-end tests rely on classifies correctly — a clean run
//! is clean; a lost id, a duplicate at another forward offset, a reorder and a fact read at a
//! zone it was not addressed to are failures; a redelivery at the same forward offset and an
//! unacknowledged fact are not. No nodes run here.

use crate::harness;

use bsfg_proto::FetchedFact;
use harness::{
    history::{History, SourceReport},
    message,
};

const SOURCE: &str = "enterprise";
const DEST: &str = "plant-a";

fn fact(source: &str, id: &str, forward_offset: u64) -> FetchedFact {
    FetchedFact {
        offset: forward_offset,
        message: message(source, DEST, id),
    }
}

/// `m1..=mN` from `SOURCE` acknowledged at store offsets 1..=N.
fn acked(n: u64) -> History {
    let history = History::new();
    for i in 1..=n {
        history.acked(SOURCE, &format!("m{i}"), i);
    }
    history
}

/// Reads of `(id, forward offset)` in order, from `SOURCE`.
fn consume(history: &History, reads: &[(&str, u64)]) {
    for (id, offset) in reads {
        history.consumed(DEST, &fact(SOURCE, id, *offset));
    }
}

fn source(history: &History) -> SourceReport {
    history.report().sources.get(SOURCE).cloned().expect("source in report")
}

#[test]
fn a_clean_history_is_clean() {
    let history = acked(3);
    consume(&history, &[("m1", 1), ("m2", 2), ("m3", 3)]);
    let report = history.report();
    report.assert_clean();
    assert_eq!(
        source(&history),
        SourceReport {
            acked: 3,
            delivered: 3,
            ..SourceReport::default()
        }
    );
    assert!(history.all_delivered());
    assert_eq!(
        report.to_string(),
        "enterprise: acked 3, delivered 3, lost 0, duplicated 0, reordered 0, unknown 0, misdelivered 0, redelivered 0\n"
    );
}

#[test]
fn an_acked_id_never_read_is_lost() {
    let history = acked(3);
    consume(&history, &[("m1", 1), ("m3", 2)]);
    let report = source(&history);
    assert_eq!(report.lost, ["m2"]);
    assert_eq!(report.delivered, 2);
    assert!(report.duplicated.is_empty() && report.reordered.is_empty());
    assert!(!history.all_delivered());
    let failure = std::panic::catch_unwind(|| history.report().assert_clean()).expect_err("lost is a failure");
    let text = failure.downcast_ref::<String>().expect("panic message");
    assert!(text.contains("lost 1 [m2]"), "{text}");
}

#[test]
fn the_same_id_at_another_forward_offset_is_a_duplicate() {
    let history = acked(2);
    consume(&history, &[("m1", 1), ("m2", 2), ("m1", 3), ("m1", 4)]);
    let report = source(&history);
    assert_eq!(report.duplicated, ["m1"], "listed once however many copies");
    assert!(report.reordered.is_empty(), "a copy is not judged for order");
    assert_eq!(report.redelivered, 0);
    assert!(!history.report().is_clean());
}

#[test]
fn the_same_id_at_the_same_forward_offset_is_a_redelivery() {
    let history = acked(2);
    consume(&history, &[("m1", 1), ("m2", 2), ("m1", 1), ("m2", 2)]);
    let report = source(&history);
    assert_eq!(report.redelivered, 2);
    assert!(report.duplicated.is_empty() && report.reordered.is_empty());
    history.report().assert_clean();
}

#[test]
fn reading_against_the_store_order_is_a_reorder() {
    let history = acked(3);
    consume(&history, &[("m2", 1), ("m1", 2), ("m3", 3)]);
    let report = source(&history);
    assert_eq!(report.reordered, ["m1"]);
    assert!(report.lost.is_empty() && report.duplicated.is_empty());
    assert!(!history.report().is_clean());
}

#[test]
fn order_is_judged_per_source() {
    let history = acked(2);
    history.acked("plant-b", "m1", 7);
    history.acked("plant-b", "m2", 8);
    consume(&history, &[("m1", 1)]);
    history.consumed(DEST, &fact("plant-b", "m1", 2));
    consume(&history, &[("m2", 3)]);
    history.consumed(DEST, &fact("plant-b", "m2", 4));
    history.report().assert_clean();
    assert_eq!(history.delivered_count("plant-b"), 2);
}

#[test]
fn a_fact_never_acked_is_unknown_but_not_a_failure() {
    let history = acked(1);
    consume(&history, &[("m1", 1), ("orphan", 2)]);
    let report = source(&history);
    assert_eq!(report.unknown, ["orphan"]);
    assert_eq!(report.delivered, 1);
    history.report().assert_clean();
}

#[test]
fn a_fact_read_where_it_was_not_addressed_is_misdelivered() {
    let history = History::new();
    history.acked_to(SOURCE, DEST, "m1", 1);
    history.acked_to(SOURCE, DEST, "m2", 2);
    consume(&history, &[("m1", 1), ("m2", 2)]);
    history.report().assert_clean();
    history.consumed("idmz", &fact(SOURCE, "m2", 1));
    let report = source(&history);
    assert_eq!(report.misdelivered, ["m2 at idmz"]);
    assert_eq!((report.delivered, report.duplicated.len()), (2, 0));
    assert!(!history.report().is_clean());
}

#[test]
fn a_report_lists_at_most_twenty_ids() {
    let history = acked(25);
    let line = history.report().to_string();
    assert!(line.contains("lost 25 [m1, m2,"), "{line}");
    assert!(line.contains("m20, … 5 more]"), "{line}");
    assert!(!line.contains("m21"), "{line}");
}
