//! Progress bars on stderr while a mode appends, drains or replays (several at once, one line
//! each). Hidden when stderr is not a terminal or the report is JSON, so scripts and logs get only
//! the report.

use std::io::{self, IsTerminal};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

pub struct Progress {
    /// `None` when hidden.
    bars: Option<MultiProgress>,
}

impl Progress {
    /// Shows bars only if `wanted` and stderr is a terminal.
    pub fn new(wanted: bool) -> Self {
        Self {
            bars: (wanted && io::stderr().is_terminal()).then(MultiProgress::new),
        }
    }

    /// A bar counting facts toward `total`, or a counter with a rate when the total is unknown.
    pub fn facts(&self, what: &str, total: Option<u64>) -> ProgressBar {
        let Some(bars) = &self.bars else {
            return ProgressBar::hidden();
        };
        let (bar, template) = match total {
            Some(total) => (
                ProgressBar::new(total),
                "{msg:>10} [{bar:40}] {human_pos}/{human_len} facts {per_sec:0} {elapsed_precise}",
            ),
            None => (
                ProgressBar::no_length(),
                "{msg:>10} {spinner} {human_pos} facts {per_sec:0} {elapsed_precise}",
            ),
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        let bar = bars.add(bar);
        bar.set_message(what.to_owned());
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    }
}
