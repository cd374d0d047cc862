//! The end-to-end tests: real `bsfg` processes on loopback, with a real PKI, real RocksDB on disk
//! and real QUIC, one behaviour per file. They are one test binary so that the harness is
//! compiled and the binary linked once, and `--test-threads` spreads the whole suite over the
//! cores instead of running 77 binaries one after another (see scripts/test.sh).

mod harness;

mod append_batch;
mod append_order;
mod append_stream;
mod bad_input;
mod config_errors;
mod crash_durability;
mod drill_buffer_exhaustion;
mod drill_disk_full;
mod drill_relay;
mod drill_storage_failing;
mod estate_artifacts;
mod estate_backpressure;
mod estate_faults;
mod estate_receipt;
mod estate_relay;
mod exchange;
mod idempotency;
mod replaced_store;
mod retry_after_crash;
mod security;
mod slow_request;

// The harness's own logic (the history checker), without nodes.
mod admin;
mod backpressure_drop_oldest;
mod backpressure_reject;
mod cert_rotation;
mod demo;
mod forward_full;
mod gate_control;
mod harness_selftest;
mod logs;
mod metrics;
mod partition;
mod retention;
mod rolling_restart;
mod safety_critical;
mod zones;

// `bsfg bench` in every mode with a tiny count: the report's schema, never its timings.
mod artifact_references;
mod artifacts;
mod bench_smoke;

// The HA engine's JetStream adapter against a real three-server nats-server cluster
// (BSFG_NATS_SERVER, see scripts/nats-server.sh); one behaviour per test.
mod audit_trail;
mod consumers;
mod engine_failover;
mod engine_lease;
mod engine_log;
mod engine_startup;
mod engine_tls;
mod metric_meanings;
mod quiet_when_healthy;
mod trace;

// Runbooks as drills: each runs the command blocks of one playbook of docs/operations.md.
mod drill_artifact_missing;
mod drill_consumer_stalled;
mod drill_coverage;
mod drill_emergency_rotation;
mod drill_log_filters;
mod drill_partition;
mod drill_planned_rotation;
mod drill_safe_restart;

// Hostile faults (issue 16): full disks, damaged storage, lossy links, a bandwidth cap.
mod disk_full_receiver;
mod disk_full_sender;

// Issue 13's storage fault, with the storage health it needs.
mod artifact_bounds;
mod bandwidth_cap;
mod damaged_table;
mod damaged_wal;
mod lossy_link;
mod storage_fault;

// HA zone (issue 17): real nats-server cluster, two instances of one zone, real bsfg processes.
mod ha_active_instance_kill;
mod ha_durability_check;

// Issue 14's ask, owned by issue 17: operator gate switches are journaled.
mod gate_persisted;
mod ha_engine_node_kill;
mod ha_large_pages;
mod ha_quorum_loss;
mod ha_snapshot_rebuild;
mod ha_step_down;
mod ha_zombie_fenced;

// `bsfg check`: preflight of a node's config, certificates, data directory and ports.
mod preflight;

// Host integration (issue 14): systemd readiness and watchdog, the unit sample; the Debian
// package with its man pages and completions.
mod packaging;
mod systemd;
