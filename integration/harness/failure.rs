//! A failing test's panic message, repeated after the node logs its fixtures print while they
//! drop: those logs bury the message, and a truncated report (CI keeps the output's ends) would
//! otherwise show the logs without saying what failed.

use std::{cell::RefCell, sync::Once};

thread_local! {
    /// The last panic on this thread (a test's body and its fixtures' drops share its thread).
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Remembers every panic's message on its thread, and still reports it as before.
pub fn remember() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            LAST.with(|last| *last.borrow_mut() = Some(info.to_string()));
            report(info);
        }));
    });
}

/// Prints this thread's panic again, once, if it had one (call it after printing logs).
pub fn repeat() {
    if let Some(message) = LAST.with(|last| last.borrow_mut().take()) {
        eprintln!("---- what failed, again after the logs ----\n{message}");
    }
}
