//! `[[routes]]` and `[[relay]]` (SPEC §4a): they map onto the node's routing, and every broken
//! rule is refused at the key to change, naming the zone.

use super::tests::{assert_invalid, parse, MINIMAL};

/// plant-a (the minimal node) with the DMZ as its peer, and `extra`.
fn plant(extra: &str) -> String {
    format!("{MINIMAL}\n[[peers]]\nzone = \"idmz\"\ndial = false\n{extra}")
}

const ROUTES: &str = r#"
[[routes]]
zones = ["enterprise", "plant-b"]
via = "idmz"
"#;

#[test]
fn routes_and_relay_rules_map_onto_the_routing() {
    let config = parse(&plant(ROUTES)).expect("routes");
    let routing = config.routing();
    assert_eq!(routing.next_hop("enterprise"), Some("idmz"));
    assert_eq!(routing.next_hop("plant-b"), Some("idmz"));
    assert_eq!(routing.next_hop("idmz"), Some("idmz"));
    assert_eq!(routing.next_hop("plant-c"), None);
    assert!(!routing.relays(), "no [[relay]]: nothing is relayed");

    let dmz = format!("{MINIMAL}\n[[peers]]\nzone = \"enterprise\"\ndial = false\n[[peers]]\nzone = \"plant-b\"\ndial = false\n[[relay]]\nfrom = [\"enterprise\"]\nto = [\"plant-b\"]\n");
    let routing = parse(&dmz).expect("relay").routing();
    assert!(routing.relays());
    assert_eq!(
        routing.relay_destinations().into_iter().collect::<Vec<_>>(),
        ["plant-b"]
    );
    let settings = parse(&dmz).expect("relay").node_settings().expect("settings");
    assert_eq!(*settings.routing, routing);
    assert!(settings.links.iter().all(|link| *link.routing == routing));
    assert_eq!(*settings.store.routing, routing);
}

#[test]
fn a_route_goes_through_a_peer_to_zones_that_are_not_peers() {
    let via_nobody = "[[routes]]\nzones = [\"enterprise\"]\nvia = \"dmz-2\"\n";
    assert_invalid(
        &plant(via_nobody),
        "routes[0].via",
        "\"dmz-2\" is not a configured peer",
    );
    let to_a_peer = "[[routes]]\nzones = [\"enterprise\", \"idmz\"]\nvia = \"idmz\"\n";
    assert_invalid(&plant(to_a_peer), "routes[0].zones[1]", "\"idmz\" is a peer");
    let to_ourselves = "[[routes]]\nzones = [\"plant-a\"]\nvia = \"idmz\"\n";
    assert_invalid(&plant(to_ourselves), "routes[0].zones[0]", "own zone");
    let twice = format!("{ROUTES}[[routes]]\nzones = [\"plant-b\"]\nvia = \"idmz\"\n");
    assert_invalid(
        &plant(&twice),
        "routes[1].zones[0]",
        "already routed (routes[0].zones[1])",
    );
    let empty = "[[routes]]\nzones = []\nvia = \"idmz\"\n";
    assert_invalid(&plant(empty), "routes[0].zones", "lists no zone");
    assert_invalid(
        &plant("[[routes]]\nzones = [\"Bad\"]\nvia = \"idmz\"\n"),
        "routes[0].zones[0]",
        "Bad",
    );
    assert_invalid(
        &plant("[[routes]]\nvia = \"idmz\"\n"),
        "routes[0].zones",
        "required key is missing",
    );
}

#[test]
fn relay_zones_must_be_reachable() {
    let unreachable = format!("{ROUTES}[[relay]]\nfrom = [\"enterprise\"]\nto = [\"plant-b\", \"plant-c\"]\n");
    assert_invalid(&plant(&unreachable), "relay[0].to[1]", "\"plant-c\" is not reachable");
    let ourselves = format!("{ROUTES}[[relay]]\nfrom = [\"plant-a\"]\nto = [\"enterprise\"]\n");
    assert_invalid(&plant(&ourselves), "relay[0].from[0]", "own zone");
    let empty = format!("{ROUTES}[[relay]]\nfrom = []\nto = [\"enterprise\"]\n");
    assert_invalid(&plant(&empty), "relay[0].from", "lists no zone");
    let unknown_key = format!("{ROUTES}[[relay]]\nfrom = [\"idmz\"]\nto = [\"enterprise\"]\nvia = \"idmz\"\n");
    assert_invalid(&plant(&unknown_key), "relay[0].via", "unknown field");
    let reachable = format!("{ROUTES}[[relay]]\nfrom = [\"idmz\", \"plant-b\"]\nto = [\"enterprise\"]\n");
    parse(&plant(&reachable)).expect("peers and routed zones are reachable");
}

#[test]
fn a_relay_never_drops_what_it_relays() {
    let relay = format!("{ROUTES}[[relay]]\nfrom = [\"idmz\"]\nto = [\"enterprise\"]\n");
    let dropping = format!("[store]\nbackpressure = \"drop_oldest\"\n{relay}");
    assert_invalid(&plant(&dropping), "store.backpressure", "relays ([[relay]])");
    parse(&plant("[store]\nbackpressure = \"drop_oldest\"\n")).expect("a node that relays nothing may drop");
    parse(&plant(&format!("[store]\nbackpressure = \"reject\"\n{relay}"))).expect("a relay that rejects");
}
