//! Names of the engine objects of one zone (design §4.2), and the checks that keep a zone or
//! instance name safe inside stream names, subjects, bucket names and record ids.

/// The zone's write-ahead log stream.
pub fn wal_stream(zone: &str) -> String {
    format!("bsfg-wal-{zone}")
}

/// The one subject of the zone's write-ahead log.
pub fn wal_subject(zone: &str) -> String {
    format!("bsfg.{zone}.wal")
}

/// The zone's lease bucket.
pub fn lease_bucket(zone: &str) -> String {
    format!("bsfg-lease-{zone}")
}

/// The zone's bucket of instances, one key each (what every instance last said of itself).
pub fn members_bucket(zone: &str) -> String {
    format!("bsfg-members-{zone}")
}

/// The zone's object store of replica snapshots.
pub fn snapshot_bucket(zone: &str) -> String {
    format!("bsfg-snapshots-{zone}")
}

/// The zone's artifact blobs, by digest (the second tier of its artifact store).
pub fn blob_bucket(zone: &str) -> String {
    format!("bsfg-blobs-{zone}")
}

/// The lease key in the bucket.
pub const LEASE_KEY: &str = "leader";

/// Whether `name` may name a zone or an instance here: `[a-z0-9][a-z0-9-]{0,62}` (SPEC §2's zone
/// syntax), safe in stream and bucket names, subjects and record ids.
pub fn is_valid(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_zone_syntax() {
        for ok in ["enterprise", "plant-a", "a", "0-x"] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in ["", "-a", "Plant", "a.b", "a b", "a*", "a>", &"x".repeat(64)] {
            assert!(!is_valid(bad), "{bad}");
        }
    }

    #[test]
    fn objects_are_named_per_zone() {
        assert_eq!(wal_stream("plant-a"), "bsfg-wal-plant-a");
        assert_eq!(members_bucket("plant-a"), "bsfg-members-plant-a");
        assert_eq!(wal_subject("plant-a"), "bsfg.plant-a.wal");
        assert_eq!(lease_bucket("plant-a"), "bsfg-lease-plant-a");
    }
}
