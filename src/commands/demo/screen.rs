//! Stdout for the demo: lines that scroll, and a status that stays at the bottom. On a terminal
//! the status rows are redrawn in place (ANSI cursor-up and erase); elsewhere, e.g. in a pipe or
//! a CI log, the status is printed as ordinary lines, at most once a second. A closed stdout is
//! an error, never a panic.

use std::{
    io::{self, Write},
    time::{Duration, Instant},
};

/// Without a terminal, one status per this much time.
const PLAIN_STATUS_EVERY: Duration = Duration::from_secs(1);

/// Prints one line to stdout.
pub fn print(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}

pub struct Screen {
    terminal: bool,
    /// Status rows on screen, the cursor at the end of the last one (terminal only).
    status_rows: usize,
    last_plain_status: Option<Instant>,
    /// How often the status is offered; a plain status is due within half of it.
    tick: Duration,
}

impl Screen {
    pub fn new(terminal: bool, tick: Duration) -> Self {
        Self {
            terminal,
            status_rows: 0,
            last_plain_status: None,
            tick,
        }
    }

    pub fn terminal(&self) -> bool {
        self.terminal
    }

    /// A line above the status.
    pub fn line(&mut self, text: &str) -> io::Result<()> {
        let mut out = io::stdout().lock();
        self.erase_status(&mut out)?;
        writeln!(out, "{text}")?;
        out.flush()
    }

    /// Shows `rows` as the current status: in place on a terminal, else as lines when due.
    pub fn status(&mut self, now: Instant, rows: &[String]) -> io::Result<()> {
        let mut out = io::stdout().lock();
        if self.terminal {
            self.erase_status(&mut out)?;
            write!(out, "{}", rows.join("\n"))?;
            self.status_rows = rows.len();
        } else if self
            .last_plain_status
            .is_none_or(|last| now.duration_since(last) + self.tick / 2 >= PLAIN_STATUS_EVERY)
        {
            for row in rows {
                writeln!(out, "{row}")?;
            }
            self.last_plain_status = Some(now);
        }
        out.flush()
    }

    /// Leaves the status on screen and moves below it.
    pub fn release(&mut self) -> io::Result<()> {
        if self.status_rows > 0 {
            self.status_rows = 0;
            let mut out = io::stdout().lock();
            writeln!(out)?;
            out.flush()?;
        }
        Ok(())
    }

    /// Back to the start of the first status row, erasing to the end of the screen.
    fn erase_status(&mut self, out: &mut impl Write) -> io::Result<()> {
        match self.status_rows {
            0 => return Ok(()),
            1 => write!(out, "\r\x1b[J")?,
            rows => write!(out, "\r\x1b[{}A\x1b[J", rows - 1)?,
        }
        self.status_rows = 0;
        Ok(())
    }
}
