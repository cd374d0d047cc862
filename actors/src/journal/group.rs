//! The writer thread: take every waiting command, plan one batch, write it with one fsync, then
//! answer. Nothing is answered before its batch is durable; if the write fails, every command in
//! the group fails with a storage error and the offsets and usage it had reserved are given back.
//! Deletions are planned last in a group, after the appends and inserts that may still have seen
//! (as duplicates) the entries they remove. Pulled pages are planned in `insert`.

mod insert;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, PoisonError},
};

use bsfg_proto::AppendResponse;
use tokio::sync::mpsc;

use super::{
    delete::{self, DeletePlan},
    AppendMode, Appended, Command, CursorChange, CursorMove, InsertOutcome, InsertPage, JournalConfig, JournalError,
    Prepared, Reply, Shared, MAX_GROUP, MAX_GROUP_BYTES,
};
use crate::{
    events::StorageOp,
    storage::{Batch, CursorKey, IdemRecord, Index, Log, Recovered, StoreAppend, Usage},
};

pub(super) struct Writer {
    shared: Arc<Shared>,
    config: JournalConfig,
    store_high: u64,
    forward_high: u64,
    usage: Usage,
    /// The storage's writer epoch this state was recovered under.
    epoch: u64,
}

/// A group's batch and the answers to send once it is durable.
#[derive(Default)]
struct Plan {
    batch: Batch,
    appends: Vec<(Reply<Appended>, Appended)>,
    inserts: Vec<(Reply<InsertOutcome>, Result<InsertOutcome, JournalError>)>,
    confirms: Vec<(Reply<u64>, Result<u64, JournalError>)>,
    changes: Vec<(Reply<CursorMove>, Result<CursorMove, JournalError>)>,
    deletes: Vec<(Reply<DeletePlan>, DeletePlan)>,
    probes: Vec<Reply<()>>,
    gates: Vec<Reply<()>>,
    /// Cursors this group sets, and cursors it removes.
    cursors: HashMap<CursorKey, u64>,
    removed: HashSet<CursorKey>,
}

type AppendCommand = (Vec<Prepared>, AppendMode, Reply<Appended>);

#[derive(Default)]
struct Group {
    /// Facts appended or inserted, plus one per other command: what bounds a group.
    entries: usize,
    /// Bytes of the facts' encodings.
    bytes: usize,
    appends: Vec<AppendCommand>,
    inserts: Vec<InsertPage>,
    confirms: Vec<(CursorKey, u64, Reply<u64>)>,
    changes: Vec<(CursorChange, Reply<CursorMove>)>,
    deletes: Vec<(DeletePlan, Reply<DeletePlan>)>,
    probes: Vec<Reply<()>>,
    gates: Vec<(String, bool, Reply<()>)>,
}

impl Writer {
    pub(super) fn new(shared: Arc<Shared>, recovered: &Recovered, config: JournalConfig) -> Self {
        Self {
            epoch: shared.storage.writer_epoch(),
            shared,
            config,
            store_high: recovered.store_high,
            forward_high: recovered.forward_high,
            usage: recovered.usage,
        }
    }

    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        // A command that would have brought its group past `MAX_GROUP_BYTES` begins the next.
        let mut carried = None;
        let sized = |command: Command| (fact_bytes(&command), command);
        while let Some((bytes, first)) = carried.take().or_else(|| rx.blocking_recv().map(sized)) {
            let mut group = Group::default();
            group.push(first, bytes);
            while group.entries < MAX_GROUP && group.bytes < MAX_GROUP_BYTES {
                match rx.try_recv().map(sized) {
                    Ok((bytes, command)) if group.bytes + bytes > MAX_GROUP_BYTES => {
                        carried = Some((bytes, command));
                        break;
                    }
                    Ok((bytes, command)) => group.push(command, bytes),
                    Err(_) => break,
                }
            }
            self.commit(group);
        }
    }

    fn commit(&mut self, group: Group) {
        if let Err(error) = self.follow_epoch() {
            return group.fail(error);
        }
        let (store_before, forward_before, usage_before) = (self.store_high, self.forward_high, self.usage);
        let mut plan = Plan::default();
        let planned = self.plan(group, &mut plan);
        plan.batch.store_high = (self.store_high != store_before).then_some(self.store_high);
        plan.batch.forward_high = (self.forward_high != forward_before).then_some(self.forward_high);
        plan.batch.usage = (self.usage != usage_before || plan.batch.probe).then_some(self.usage);
        plan.batch.epoch = self.epoch;
        let written = planned.and_then(|()| match plan.batch.is_empty() {
            true => Ok(()),
            false => {
                let _committing = self.shared.stall.committing();
                self.shared.storage.commit(&plan.batch).map_err(JournalError::from)
            }
        });
        let health = &self.shared.health;
        match written {
            Ok(()) => {
                health.succeeded(StorageOp::Commit);
                self.publish(plan);
            }
            Err(error) => {
                match &error {
                    // A standby's storage refuses writes by design: it is not failing (and a
                    // demoted instance's earlier failures clear at its next probe).
                    JournalError::NotWriter(_) => health.succeeded(StorageOp::Commit),
                    _ => health.failed(StorageOp::Commit, &error),
                }
                (self.store_high, self.forward_high, self.usage) = (store_before, forward_before, usage_before);
                fail(plan, error);
            }
        }
    }

    /// When the storage changed writers (an HA instance promoted or demoted), the state this
    /// writer planned with may be stale: it is recovered again from storage before any planning,
    /// and the batches carry the epoch they were planned under (a replicated storage refuses
    /// others).
    fn follow_epoch(&mut self) -> Result<(), JournalError> {
        let epoch = self.shared.storage.writer_epoch();
        if epoch == self.epoch {
            return Ok(());
        }
        let recovered = self.shared.storage.recover()?;
        (self.store_high, self.forward_high, self.usage) =
            (recovered.store_high, recovered.forward_high, recovered.usage);
        *self.shared.cursors.lock().unwrap_or_else(PoisonError::into_inner) = recovered.cursors;
        self.epoch = epoch;
        self.publish(Plan::default());
        Ok(())
    }

    /// Plans every command of `group` into `plan`. After a failed read nothing more is planned,
    /// but every command's reply still goes into `plan`, so that the failure answers them all.
    fn plan(&mut self, group: Group, plan: &mut Plan) -> Result<(), JournalError> {
        let mut planned = self.plan_appends(group.appends, plan);
        for page in group.inserts {
            let InsertPage { facts, relayed, reply } = page;
            let outcome = match planned {
                Ok(()) => self.plan_insert(facts, relayed, plan),
                Err(_) => Ok(InsertOutcome::default()),
            };
            // A page refused for lack of disk fails alone; a storage fault fails the group.
            let outcome = match outcome {
                Err(error @ (JournalError::Storage(_) | JournalError::NotWriter(_))) => {
                    planned = Err(error);
                    Ok(InsertOutcome::default())
                }
                other => other,
            };
            plan.inserts.push((reply, outcome));
        }
        for (key, offset, reply) in group.confirms {
            let result = self.plan_confirm(key, offset, plan);
            plan.confirms.push((reply, result));
        }
        for (change, reply) in group.changes {
            let result = self.plan_change(change, plan);
            plan.changes.push((reply, result));
        }
        for (peer, closed, reply) in group.gates {
            plan.batch.gates.retain(|(p, _)| *p != peer);
            plan.batch.gates.push((peer, closed));
            plan.gates.push(reply);
        }
        let confirmed = match group.deletes.is_empty() {
            true => delete::Confirmed::default(),
            false => self.confirmed_now(&group.deletes, plan),
        };
        for (deletes, reply) in group.deletes {
            let storage = self.shared.storage.as_ref();
            let applied = unless_failed(&mut planned, || {
                delete::apply(storage, deletes, &confirmed, &mut self.usage, &mut plan.batch)
            });
            plan.deletes.push((reply, applied));
        }
        plan.batch.probe = !group.probes.is_empty();
        plan.probes = group.probes;
        planned
    }

    fn plan_appends(&mut self, appends: Vec<AppendCommand>, plan: &mut Plan) -> Result<(), JournalError> {
        if appends.is_empty() {
            // Most groups of a busy link hold only inserts and confirms: no lookup for them.
            return Ok(());
        }
        let keys: Vec<(&str, &str)> = appends
            .iter()
            .flat_map(|(facts, ..)| facts)
            .map(|p| ("", p.envelope.message_id.as_str()))
            .collect();
        let looked_up = self.shared.storage.lookup(Index::Store, &keys);
        let facts = keys.len();
        drop(keys);
        let mut stored = match looked_up {
            Ok(stored) => stored.into_iter(),
            Err(error) => {
                plan.appends
                    .extend(appends.into_iter().map(|(.., reply)| (reply, Vec::new())));
                return Err(error.into());
            }
        };
        // Sized for the group: growing it rehashed every id several times over.
        let mut seen: HashMap<String, IdemRecord> = HashMap::with_capacity(facts);
        let now = bsfg_proto::model::now_unix_ms();
        for (facts, mode, reply) in appends {
            let lookups: Vec<_> = stored.by_ref().take(facts.len()).collect();
            let results = self.plan_call(facts, lookups, mode, now, &mut seen, plan);
            plan.appends.push((reply, results));
        }
        Ok(())
    }

    /// The facts of one append command, in order, each with what storage holds under its id.
    fn plan_call(
        &mut self,
        facts: Vec<Prepared>,
        lookups: Vec<Option<IdemRecord>>,
        mode: AppendMode,
        now: u64,
        seen: &mut HashMap<String, IdemRecord>,
        plan: &mut Plan,
    ) -> Appended {
        let mut results = Vec::with_capacity(facts.len());
        let mut full: Option<JournalError> = None;
        for (prepared, stored) in facts.into_iter().zip(lookups) {
            // Once a fact of a call did not fit, no later new fact of that call is taken,
            // so a retried call keeps its order.
            let result = match &full {
                Some(error) if stored.is_none() && !seen.contains_key(&prepared.envelope.message_id) => {
                    Err(error.clone())
                }
                _ => self.plan_append(prepared, stored, now, seen, plan),
            };
            if let Err(error @ (JournalError::Full { .. } | JournalError::DiskFull)) = &result {
                full.get_or_insert_with(|| error.clone());
            }
            let failed = result.is_err();
            results.push(result);
            if failed && mode == AppendMode::StopAtFailure {
                break;
            }
        }
        results
    }

    /// One fact of a group: a duplicate of what is stored (or planned earlier in the group), a
    /// conflict with it, or a new entry in the batch.
    fn plan_append(
        &mut self,
        mut prepared: Prepared,
        stored: Option<IdemRecord>,
        now: u64,
        seen: &mut HashMap<String, IdemRecord>,
        plan: &mut Plan,
    ) -> Result<AppendResponse, JournalError> {
        // Taken, not copied: nothing reads the envelope after its id.
        let id = std::mem::take(&mut prepared.envelope.message_id);
        match seen.get(&id).copied().or(stored) {
            Some(found) if found.holds(&prepared.digest) => Ok(AppendResponse {
                offset: found.offset,
                duplicate: true,
            }),
            Some(found) => Err(JournalError::AlreadyExists {
                message_id: id,
                offset: found.offset,
            }),
            None => {
                let bytes = self.admit(&prepared)?;
                self.usage.store.add(bytes);
                self.store_high += 1;
                let offset = self.store_high;
                let record = IdemRecord {
                    offset,
                    digest: Some(prepared.digest),
                };
                seen.insert(id.clone(), record);
                plan.batch.store.push(store_append(offset, now, id, None, prepared));
                Ok(AppendResponse {
                    offset,
                    duplicate: false,
                })
            }
        }
    }

    /// The bytes a new fact adds to the store buffer, unless they would take it past the limit
    /// or the disk has no room for them.
    fn admit(&self, prepared: &Prepared) -> Result<u64, JournalError> {
        let needed = Log::Store.entry_bytes(prepared.encoded.len());
        match self.config.store_byte_limit {
            Some(capacity) if self.usage.store.bytes + needed > capacity => Err(JournalError::Full {
                retained: self.usage.store.bytes,
                needed,
                capacity,
            }),
            _ if !self.shared.disk.spend(needed) => Err(JournalError::DiskFull),
            _ => Ok(needed),
        }
    }

    fn plan_confirm(&mut self, key: CursorKey, offset: u64, plan: &mut Plan) -> Result<u64, JournalError> {
        let high = match key {
            CursorKey::Peer(_) => self.store_high,
            CursorKey::Consumer(_) => self.forward_high,
        };
        if offset > high {
            return Err(JournalError::BeyondEnd { offset, high });
        }
        let current = self.planned_cursor(&key, plan).unwrap_or(0);
        if offset > current {
            plan.batch.cursors.push((key.clone(), offset));
            plan.cursors.insert(key, offset);
            return Ok(offset);
        }
        Ok(current)
    }

    /// The forward offset every consumer has confirmed, as this group leaves the cursors (0 when
    /// none is known), as the planner computes it from its snapshot: a deletion of confirmed
    /// facts planned before a rewind stops here.
    fn confirmed_by_consumers(&self, plan: &Plan) -> u64 {
        let cursors = self.shared.cursors.lock().unwrap_or_else(PoisonError::into_inner);
        let committed = cursors
            .iter()
            .filter(|(key, _)| !plan.removed.contains(*key) && !plan.cursors.contains_key(*key));
        CursorKey::consumed(committed.chain(plan.cursors.iter()))
    }

    /// What is confirmed as this group leaves the cursors: by every consumer, and by each peer
    /// whose facts `deletes` would delete. Deletions are planned from an earlier snapshot.
    fn confirmed_now(&self, deletes: &[(DeletePlan, Reply<DeletePlan>)], plan: &Plan) -> delete::Confirmed {
        let peers: HashSet<&str> = deletes
            .iter()
            .flat_map(|(deletes, _)| deletes.store.iter().map(|d| d.peer.as_str()))
            .collect();
        let frontier = |peer: &str| {
            let cursor = self.planned_cursor(&CursorKey::Peer(peer.to_owned()), plan);
            (peer.to_owned(), cursor.unwrap_or(0))
        };
        delete::Confirmed {
            consumed: self.confirmed_by_consumers(plan),
            frontiers: peers.into_iter().map(frontier).collect(),
        }
    }

    /// A cursor as this group leaves it so far (`None`: unknown or removed).
    fn planned_cursor(&self, key: &CursorKey, plan: &Plan) -> Option<u64> {
        if plan.removed.contains(key) {
            return None;
        }
        if let Some(pending) = plan.cursors.get(key) {
            return Some(*pending);
        }
        let cursors = self.shared.cursors.lock().unwrap_or_else(PoisonError::into_inner);
        cursors.get(key).copied()
    }

    /// Rewinds or removes a cursor; the batch writes (or deletes) it durably.
    fn plan_change(&mut self, change: CursorChange, plan: &mut Plan) -> Result<CursorMove, JournalError> {
        let key = match &change {
            CursorChange::Rewind(key, _) | CursorChange::Remove(key) => key.clone(),
        };
        let previous = self.planned_cursor(&key, plan);
        let unknown = || JournalError::UnknownCursor(cursor_name(&key));
        let cursor = match (change, previous) {
            (CursorChange::Rewind(..), None) | (CursorChange::Remove(_), None) => return Err(unknown()),
            (CursorChange::Rewind(_, to), Some(cursor)) if to > cursor => {
                let name = cursor_name(&key);
                return Err(JournalError::RewindForward { name, to, cursor });
            }
            (CursorChange::Rewind(_, to), Some(_)) => to,
            (CursorChange::Remove(_), Some(_)) => {
                plan.cursors.remove(&key);
                plan.batch.cursors.retain(|(k, _)| k != &key);
                plan.batch.cursor_deletes.push(key.clone());
                plan.removed.insert(key);
                return Ok(CursorMove { previous, cursor: None });
            }
        };
        plan.batch.cursors.push((key.clone(), cursor));
        plan.cursors.insert(key, cursor);
        Ok(CursorMove {
            previous,
            cursor: Some(cursor),
        })
    }

    fn publish(&self, plan: Plan) {
        if !(plan.cursors.is_empty() && plan.removed.is_empty()) {
            let mut cursors = self.shared.cursors.lock().unwrap_or_else(PoisonError::into_inner);
            cursors.retain(|key, _| !plan.removed.contains(key));
            cursors.extend(plan.cursors);
        }
        self.shared
            .store_high
            .send_if_modified(|high| std::mem::replace(high, self.store_high) != self.store_high);
        self.shared
            .forward_high
            .send_if_modified(|high| std::mem::replace(high, self.forward_high) != self.forward_high);
        self.shared
            .usage
            .send_if_modified(|usage| std::mem::replace(usage, self.usage) != self.usage);
        // A caller that gave up (dropped its receiver) still had its command committed; that is
        // why every data-path command is safe to retry.
        for (reply, results) in plan.appends {
            let _ = reply.send(Ok(results));
        }
        for (reply, outcome) in plan.inserts {
            let _ = reply.send(outcome);
        }
        for (reply, result) in plan.confirms {
            let _ = reply.send(result);
        }
        for (reply, result) in plan.changes {
            let _ = reply.send(result);
        }
        for (reply, applied) in plan.deletes {
            let _ = reply.send(Ok(applied));
        }
        for reply in plan.probes {
            let _ = reply.send(Ok(()));
        }
        for reply in plan.gates {
            let _ = reply.send(Ok(()));
        }
    }
}

impl Group {
    /// Answers every command with `error`, nothing planned.
    fn fail(self, error: JournalError) {
        self.appends.into_iter().for_each(|(_, _, reply)| {
            let _ = reply.send(Err(error.clone()));
        });
        self.inserts.into_iter().for_each(|page| {
            let _ = page.reply.send(Err(error.clone()));
        });
        self.confirms.into_iter().for_each(|(_, _, reply)| {
            let _ = reply.send(Err(error.clone()));
        });
        self.changes.into_iter().for_each(|(_, reply)| {
            let _ = reply.send(Err(error.clone()));
        });
        self.deletes.into_iter().for_each(|(_, reply)| {
            let _ = reply.send(Err(error.clone()));
        });
        self.gates.into_iter().for_each(|(_, _, reply)| {
            let _ = reply.send(Err(error.clone()));
        });
        self.probes.into_iter().for_each(|reply| {
            let _ = reply.send(Err(error.clone()));
        });
    }

    /// Takes `command`, whose facts' encodings hold `bytes` ([`fact_bytes`]).
    fn push(&mut self, command: Command, bytes: usize) {
        self.entries += match &command {
            Command::Append(facts, ..) => facts.len(),
            Command::Insert(page) => page.facts.len(),
            Command::Confirm(..)
            | Command::Cursor(..)
            | Command::Delete(..)
            | Command::Probe(_)
            | Command::Gate(..) => 1,
        };
        self.bytes += bytes;
        match command {
            Command::Append(facts, mode, reply) => self.appends.push((facts, mode, reply)),
            Command::Insert(page) => self.inserts.push(page),
            Command::Confirm(key, offset, reply) => self.confirms.push((key, offset, reply)),
            Command::Cursor(change, reply) => self.changes.push((change, reply)),
            Command::Delete(plan, reply) => self.deletes.push((plan, reply)),
            Command::Probe(reply) => self.probes.push(reply),
            Command::Gate(peer, closed, reply) => self.gates.push((peer, closed, reply)),
        }
    }
}

/// Bytes of the facts' encodings `command` writes.
fn fact_bytes(command: &Command) -> usize {
    match command {
        Command::Append(facts, ..) => facts.iter().map(|f| f.encoded.len()).sum(),
        Command::Insert(page) => {
            let delivered: usize = page.facts.iter().map(|(_, f)| f.encoded.len()).sum();
            delivered + page.relayed.iter().map(|f| f.encoded.len()).sum::<usize>()
        }
        _ => 0,
    }
}

/// Runs `step` unless an earlier step of the group failed; a failure is kept for the group.
fn unless_failed<T: Default>(
    failed: &mut Result<(), JournalError>,
    step: impl FnOnce() -> Result<T, JournalError>,
) -> T {
    if failed.is_err() {
        return T::default();
    }
    step().unwrap_or_else(|error| {
        *failed = Err(error);
        T::default()
    })
}

/// The name a cursor is known by in errors: a consumer's name, or `peer:<zone>`.
fn cursor_name(key: &CursorKey) -> String {
    match key {
        CursorKey::Consumer(name) => name.clone(),
        CursorKey::Peer(zone) => format!("peer:{zone}"),
    }
}

/// The store-log entry of `prepared`; `origin` is `Some(from_zone)` for a relayed fact.
fn store_append(offset: u64, now: u64, message_id: String, origin: Option<String>, prepared: Prepared) -> StoreAppend {
    StoreAppend {
        offset,
        appended_at_unix_ms: now,
        peer: prepared.peer,
        origin,
        message_id,
        digest: prepared.digest,
        encoded: prepared.encoded,
    }
}

fn fail(plan: Plan, error: JournalError) {
    for (reply, _) in plan.appends {
        let _ = reply.send(Err(error.clone()));
    }
    for (reply, _) in plan.inserts {
        let _ = reply.send(Err(error.clone()));
    }
    for (reply, _) in plan.confirms {
        let _ = reply.send(Err(error.clone()));
    }
    for (reply, _) in plan.changes {
        let _ = reply.send(Err(error.clone()));
    }
    for (reply, _) in plan.deletes {
        let _ = reply.send(Err(error.clone()));
    }
    for reply in plan.probes {
        let _ = reply.send(Err(error.clone()));
    }
    for reply in plan.gates {
        let _ = reply.send(Err(error.clone()));
    }
}
