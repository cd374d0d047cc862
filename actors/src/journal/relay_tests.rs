//! A relay's half of a pulled page (SPEC §4a) against a real RocksDB: relayed facts are stored
//! once for their next hop under the key `(from_zone, message_id)` — beside the producers' keys,
//! never colliding with them — in the same commit as the page's deliveries (a failed commit
//! stores neither), counted in the store's usage, recognised as duplicates after a reopen, and
//! deleted with their key.

use super::{JournalConfig, Prepared, Put};
use crate::{
    storage::{DeleteReason, Index, StoreDelete},
    testkit::{faults::Op, message, page, Fixture, ZONE},
};

use super::DeletePlan;

/// A fact from `from` to `to` as this relay stores it: its zone appended to the hops.
fn relayed(from: &str, to: &str, id: &str) -> Prepared {
    let mut message = message(from, to, id);
    message.envelope.hops.push(ZONE.into());
    Prepared::new(message).expect("prepare").via(to)
}

fn relay_page() -> Vec<Prepared> {
    vec![
        relayed("enterprise", "plant-b", "same"),
        relayed("enterprise", "plant-b", "r2"),
    ]
}

#[tokio::test]
async fn relayed_facts_are_stored_once_for_their_next_hop_beside_the_delivered_ones() {
    let fixture = Fixture::open(JournalConfig::default());
    let local = fixture
        .append(message(ZONE, "enterprise", "same"))
        .await
        .expect("a local fact with the same id");
    let outcome = fixture
        .journal
        .insert_page(page("enterprise", 1, &["x"]), relay_page())
        .await
        .expect("page");
    assert_eq!(outcome.delivered, [Put::New]);
    assert_eq!(
        outcome.relayed,
        [Put::New, Put::New],
        "no collision with the local `same`"
    );
    let waiting = fixture.storage().read_store("plant-b", 0, u64::MAX, 10).expect("read");
    let ids: Vec<_> = waiting.iter().map(|r| r.message().expect("decode").envelope).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.iter().all(|e| e.hops == [ZONE] && e.from_zone == "enterprise"));
    let usage = *fixture.journal.usage().borrow();
    assert_eq!((usage.store.facts, usage.forward.facts), (3, 1));
    assert_eq!(usage, fixture.storage.recount().expect("recount"));
    let keys = [("", "same"), ("enterprise", "same")];
    let found = fixture.storage().lookup(Index::Store, &keys).expect("lookup");
    assert_eq!(found[0].map(|r| r.offset), Some(local.offset));
    assert_eq!(found[1].map(|r| r.offset), Some(waiting[0].offset));

    // Pulled again (the relay crashed before confirming the page): nothing is stored twice,
    // even after a restart.
    let fixture = fixture.reopen(JournalConfig::default());
    let again = fixture
        .journal
        .insert_page(page("enterprise", 1, &["x"]), relay_page())
        .await
        .expect("again");
    assert_eq!(
        (again.delivered, again.relayed),
        (vec![Put::Duplicate], vec![Put::Duplicate; 2])
    );
    assert_eq!(*fixture.journal.usage().borrow(), usage);

    let mut other_content = message("enterprise", "plant-b", "r2");
    other_content.fact.object_json = "\"other\"".into();
    other_content.envelope.hops.push(ZONE.into());
    let same_id_elsewhere = relayed("plant-c", "plant-b", "r2");
    let mixed = vec![
        Prepared::new(other_content).expect("prepare").via("plant-b"),
        same_id_elsewhere,
    ];
    let outcome = fixture.journal.insert_page(Vec::new(), mixed).await.expect("mixed");
    assert_eq!(
        outcome.relayed,
        [Put::Conflict, Put::New],
        "the key is (from_zone, message_id)"
    );
}

#[tokio::test]
async fn a_relayed_fact_leaves_with_its_key() {
    let fixture = Fixture::open(JournalConfig::default());
    fixture
        .journal
        .insert_page(Vec::new(), relay_page())
        .await
        .expect("page");
    let delete = StoreDelete {
        offset: 1,
        peer: "plant-b".into(),
        origin: Some("enterprise".into()),
        to_zone: "plant-b".into(),
        message_id: "same".into(),
        reason: DeleteReason::Confirmed,
    };
    let plan = DeletePlan {
        store: vec![delete],
        forward: Vec::new(),
    };
    fixture.journal.delete(plan).await.expect("delete");
    let keys = [("enterprise", "same"), ("enterprise", "r2")];
    let found = fixture.storage().lookup(Index::Store, &keys).expect("lookup");
    assert_eq!((found[0], found[1].map(|r| r.offset)), (None, Some(2)));
    assert_eq!(
        fixture
            .storage()
            .read_store("plant-b", 0, u64::MAX, 10)
            .expect("read")
            .len(),
        1
    );
    let usage = *fixture.journal.usage().borrow();
    assert_eq!(usage, fixture.storage.recount().expect("recount"));
}

#[tokio::test]
async fn a_failed_commit_stores_neither_the_deliveries_nor_the_relays_of_a_page() {
    let fixture = Fixture::open(JournalConfig::default());
    fixture.faults.fail(Op::Commit);
    let failed = fixture
        .journal
        .insert_page(page("enterprise", 1, &["x"]), relay_page())
        .await;
    assert!(failed.is_err(), "the commit failed");
    assert_eq!(
        fixture.storage().read_store("plant-b", 0, u64::MAX, 10).expect("read"),
        []
    );
    assert_eq!(fixture.storage().read_forward(0, u64::MAX, 10).expect("read"), []);
    let retried = fixture
        .journal
        .insert_page(page("enterprise", 1, &["x"]), relay_page())
        .await
        .expect("the link pulls the page again");
    assert_eq!(
        (retried.delivered, retried.relayed),
        (vec![Put::New], vec![Put::New; 2])
    );
    assert_eq!(
        *fixture.journal.usage().borrow(),
        fixture.storage.recount().expect("recount")
    );
}

/// Relayed facts count in the store's usage but are not refused by the byte limit that refuses
/// appends: their backpressure is the pull pause, and a page is taken whole.
#[tokio::test]
async fn relayed_facts_count_in_the_store_but_the_append_limit_does_not_refuse_them() {
    let fixture = Fixture::open(JournalConfig {
        store_byte_limit: Some(1),
        ..JournalConfig::default()
    });
    let outcome = fixture
        .journal
        .insert_page(Vec::new(), relay_page())
        .await
        .expect("page");
    assert_eq!(outcome.relayed, [Put::New, Put::New]);
    assert_eq!(fixture.journal.usage().borrow().store.facts, 2);
    let refused = fixture.append(message(ZONE, "enterprise", "a")).await;
    assert!(matches!(refused, Err(super::JournalError::Full { .. })), "{refused:?}");
}
