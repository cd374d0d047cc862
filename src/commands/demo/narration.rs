//! The words of the tour, per scenario: what the newcomer is about to see, what each phase does,
//! and the verdict.

use super::{lab::HA_LEASE_TTL, scenario::Kind, story::Plan};

/// The nodes' `replication.batch_limit` (the default), for the narration.
const BATCH_LIMIT: u32 = 1000;

pub fn intro(kind: Kind, plan: &Plan) -> String {
    match kind {
        Kind::Pair => format!(
            "\nIn each zone a producer appends {} facts/s addressed to the other zone; each is acknowledged as soon\n\
             as it is durable on its own zone's node. A consumer in each zone fetches and confirms what arrives.\n\
             The status shows, per zone: its gate toward the peer, its backlog (acknowledged there, not\n\
             yet received by the peer) and the facts delivered to the peer per second.",
            plan.rate
        ),
        Kind::Estate => format!(
            "\nEnterprise and the plants never talk directly: each routes the other's zone through idmz, which\n\
             relays enterprise → plants and plants → enterprise, and nothing else. Producers append {} facts/s on\n\
             each of four flows, addressed to the final zone; each fact is acknowledged as soon as it is durable\n\
             on its origin's node. idmz pulls it, stores it once for its next hop, and the destination pulls it\n\
             from idmz. A consumer in every zone (idmz too) fetches and confirms what arrives there.\n\
             The status shows, per flow: the gates along its way (origin → idmz › idmz → destination), its\n\
             backlog (acknowledged at the origin, not yet received at its zone) and the facts delivered per second.",
            plan.rate
        ),
        Kind::Ha => format!(
            "\nplant-a is an HA zone: two instances, one active, one standby, over a three-server JetStream cluster.\n\
             The active instance writes every group commit to the zone's log on the engine and acknowledges a\n\
             fact once a quorum of the engine servers has it on disk; the standby applies the log to its own\n\
             replica and watches the active instance's lease. In each zone a producer appends {} facts/s\n\
             addressed to the other zone; a consumer in each zone fetches and confirms what arrives. plant-a's\n\
             clients and enterprise know both instances' addresses. The status shows enterprise's gate toward\n\
             plant-a, each flow's backlog and the facts delivered per second.",
            plan.rate
        ),
    }
}

pub fn partition(kind: Kind, plan: &Plan) -> String {
    let (secs, timeout) = (plan.partition.as_secs(), plan.link_timeout.as_secs());
    match kind {
        Kind::Pair => format!(
            "\nphase 2/3: partition ({secs} s). Both proxies now drop every datagram, as if the cable between the zones\n\
             were cut. Producers keep appending to their own node and keep getting acknowledgements: the\n\
             backlogs grow. Each node declares the link dead after replication.link_timeout ({timeout} s here),\n\
             and its gate goes autonomous."
        ),
        Kind::Estate => format!(
            "\nphase 2/3: partition ({secs} s). The plant-a leg is cut: its proxy drops every datagram. plant-a's\n\
             producer keeps getting acknowledgements from its own node, where its facts wait; the enterprise\n\
             facts for plant-a wait at idmz, which keeps pulling from the enterprise. plant-b's flows do not\n\
             notice. Both ends of the leg declare it dead after replication.link_timeout ({timeout} s here)."
        ),
        Kind::Ha => format!(
            "\nphase 2/3: failover ({secs} s). The active instance of plant-a is killed (SIGKILL, as a power cut\n\
             would). Its lease is not renewed: after lease_ttl ({HA_LEASE_TTL} here) the standby takes it, applies the rest\n\
             of the zone's log, fences the old instance with a new epoch and serves. Meanwhile plant-a's producer\n\
             is answered by nobody and retries; enterprise keeps acknowledging its own producer, buffers for\n\
             plant-a, and its link moves on to the other address once the new active instance serves."
        ),
    }
}

pub fn heal(kind: Kind) -> String {
    let replay = format!(
        "replay the backlog in pages of up to batch_limit = {BATCH_LIMIT} facts: while pages\n\
         come back full the gate is reconciliation; once caught up it is normal again."
    );
    match kind {
        Kind::Pair => format!(
            "\nphase 3/3: heal. The proxies relay again. The nodes reconnect (with backoff: it may take a few\n\
             seconds) and {replay}"
        ),
        Kind::Estate => format!(
            "\nphase 3/3: heal. The plant-a leg relays again. plant-a reconnects to idmz (with backoff: it may take\n\
             a few seconds); idmz and plant-a each {replay}"
        ),
        Kind::Ha => format!(
            "\nphase 3/3: after the failover. enterprise reconnects to the new active instance and the nodes\n\
             {replay}"
        ),
    }
}

pub fn verdict(kind: Kind) -> String {
    match kind {
        Kind::Pair => "every acknowledged fact arrived exactly once, in the order it was appended.".to_owned(),
        Kind::Estate => {
            "every acknowledged fact arrived exactly once at its final zone, through idmz, in the order it was \
             appended, and nowhere else."
                .to_owned()
        }
        Kind::Ha => "every fact acknowledged by either instance arrived exactly once, in the order it was appended: \
                     the failover lost nothing."
            .to_owned(),
    }
}
