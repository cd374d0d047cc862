//! What the user watches: narration, every gate transition as the nodes log it, and a status
//! per tick with, for each flow, the gates along its way (one per hop), its backlog
//! (acknowledged at the origin, not yet received at its zone) and the facts delivered per second.
//! On a terminal the status is one row per flow, redrawn in place; otherwise one line, printed
//! once a second.

use std::{
    collections::{BTreeMap, VecDeque},
    io::{self, IsTerminal},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::bail;

use super::{
    gates::{GateLog, Transition},
    scenario::{Link, Scenario},
    screen::Screen,
    traffic::{Flow, Tally},
};

const TICK: Duration = Duration::from_millis(250);
/// Delivery rates are averaged over this window.
const RATE_WINDOW: Duration = Duration::from_secs(1);
const MAX_REASON_CHARS: usize = 70;

pub struct Monitor {
    started: Instant,
    flows: Vec<Arc<Flow>>,
    /// `paths[i]`: the links `flows[i]` crosses.
    paths: Vec<Vec<Link>>,
    /// The log of every node on some flow's way, by zone.
    gates: BTreeMap<&'static str, GateLog>,
    meters: Vec<RateMeter>,
    screen: Screen,
}

impl Monitor {
    /// Watches the flows of `scenario` and the logs (in `dir`) of the nodes on their way.
    pub fn new(dir: &Path, scenario: &Scenario) -> Self {
        let gates = scenario
            .links()
            .into_iter()
            .map(|(zone, _)| (zone, GateLog::new(zone, dir.join(format!("{zone}.log")))))
            .collect();
        Self {
            started: Instant::now(),
            flows: scenario.flows.clone(),
            paths: scenario.paths.clone(),
            gates,
            meters: scenario.flows.iter().map(|_| RateMeter::default()).collect(),
            screen: Screen::new(io::stdout().is_terminal(), TICK),
        }
    }

    /// The gate `zone` reports toward `peer`.
    fn gate(&self, (zone, peer): Link) -> &str {
        self.gates.get(zone).map_or("autonomous", |log| log.state(peer))
    }

    /// A narration line, kept above the status.
    pub fn say(&mut self, text: &str) -> anyhow::Result<()> {
        Ok(self.screen.line(text)?)
    }

    /// Whether the gate of every link of every flow is in `state`.
    pub fn all_gates(&self, state: &str) -> bool {
        self.paths.iter().flatten().all(|link| self.gate(*link) == state)
    }

    /// Whether the gates of `links` are in `state`.
    pub fn gates_are(&self, links: &[Link], state: &str) -> bool {
        links.iter().all(|link| self.gate(*link) == state)
    }

    /// The flows' counts; `exact` also counts what is missing (a pass over every fact).
    pub fn tallies(&self, exact: bool) -> Vec<Tally> {
        self.flows.iter().map(|flow| flow.tally(exact)).collect()
    }

    /// Keeps the display going for `span`.
    pub async fn watch_for(&mut self, span: Duration) -> anyhow::Result<()> {
        self.watch_until(span, |_| false).await.map(|_| ())
    }

    /// Keeps the display going until `done` holds (checked after every tick) or `limit` passed;
    /// returns how long it took to hold, or `None`. Fails when a producer or consumer failed.
    pub async fn watch_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&Self) -> bool,
    ) -> anyhow::Result<Option<Duration>> {
        let start = Instant::now();
        let mut ticks = tokio::time::interval(TICK);
        loop {
            ticks.tick().await;
            self.tick()?;
            if done(self) {
                return Ok(Some(start.elapsed()));
            }
            if start.elapsed() >= limit {
                return Ok(None);
            }
        }
    }

    fn tick(&mut self) -> anyhow::Result<()> {
        if let Some(failure) = self.flows.iter().find_map(|flow| flow.failure()) {
            bail!("{failure}");
        }
        let mut transitions = Vec::new();
        for log in self.gates.values_mut() {
            transitions.extend(log.poll()?);
        }
        for transition in &transitions {
            let line = self.event_line(transition);
            self.screen.line(&line)?;
        }
        let now = Instant::now();
        let tallies = self.tallies(false);
        for (meter, tally) in self.meters.iter_mut().zip(tallies) {
            meter.sample(now, tally.delivered);
        }
        let rows = self.status_rows();
        Ok(self.screen.status(now, &rows)?)
    }

    fn event_line(&self, t: &Transition) -> String {
        let reason: String = t.reason.chars().take(MAX_REASON_CHARS).collect();
        format!(
            "  [{:>5.1}s] {}'s gate toward {}: {} → {} ({reason})",
            self.started.elapsed().as_secs_f64(),
            t.zone,
            t.peer,
            t.previous,
            t.new
        )
    }

    /// On a terminal one row per flow, redrawn in place; otherwise one line for all flows.
    fn status_rows(&self) -> Vec<String> {
        let time = format!("  {:>5.1}s", self.started.elapsed().as_secs_f64());
        let tallies = self.tallies(false);
        let flows = self.flows.iter().zip(&self.paths).zip(tallies.iter().zip(&self.meters));
        let terminal = self.screen.terminal();
        let parts: Vec<String> = flows
            .map(|((flow, path), (tally, meter))| {
                let name = match path.len() {
                    1 => format!("{}:", flow.from),
                    _ => format!("{}→{}:", flow.from, flow.to),
                };
                let states: Vec<&str> = path.iter().map(|link| self.gate(*link)).collect();
                let state = states.join(" › ");
                let gate = if path.len() > 1 { "gates" } else { "gate" };
                let (backlog, rate) = (tally.backlog(), meter.per_second());
                if terminal {
                    format!("{name:<11} {gate} {state:<14}  backlog {backlog:>5}  delivered {rate:>5}/s")
                } else {
                    format!("{name:<11} {state:<14} backlog {backlog:>5} {rate:>5}/s")
                }
            })
            .collect();
        if !terminal {
            return vec![format!("{time}  {}", parts.join("  |  "))];
        }
        let indent = " ".repeat(time.len());
        parts
            .iter()
            .enumerate()
            .map(|(i, part)| format!("{}  {part}", if i == 0 { &time } else { &indent }))
            .collect()
    }

    /// Leaves the last status on screen, so what follows starts on a line of its own.
    pub fn finish(&mut self) -> anyhow::Result<()> {
        Ok(self.screen.release()?)
    }
}

/// Facts delivered per second over the last [`RATE_WINDOW`].
#[derive(Default)]
struct RateMeter {
    samples: VecDeque<(Instant, u64)>,
}

impl RateMeter {
    fn sample(&mut self, now: Instant, delivered: u64) {
        self.samples.push_back((now, delivered));
        while self
            .samples
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
    }

    fn per_second(&self) -> u64 {
        let (Some((first_at, first)), Some((last_at, last))) = (self.samples.front(), self.samples.back()) else {
            return 0;
        };
        let seconds = last_at.duration_since(*first_at).as_secs_f64();
        if seconds <= 0.0 {
            return 0;
        }
        (last.saturating_sub(*first) as f64 / seconds).round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_the_delivery_over_the_last_second() {
        let mut meter = RateMeter::default();
        let t0 = Instant::now();
        assert_eq!(meter.per_second(), 0);
        meter.sample(t0, 0);
        meter.sample(t0 + Duration::from_millis(500), 100);
        meter.sample(t0 + Duration::from_millis(1000), 200);
        assert_eq!(meter.per_second(), 200);
        meter.sample(t0 + Duration::from_millis(2000), 200);
        assert_eq!(meter.per_second(), 0, "older samples leave the window");
    }
}
