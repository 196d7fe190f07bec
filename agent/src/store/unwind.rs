//! Reading a damaged store file can panic inside redb (an impossible page state
//! asserted in its cursor code). The store treats such a panic as damage: it runs
//! the read under [`catch_quietly`], which catches the panic and keeps its message
//! off standard error (the caller reports the damage instead, once, with the file
//! and the fix). Other panics of the process still print as usual.

use std::panic::{AssertUnwindSafe, PanicHookInfo};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

/// Reads in progress under [`catch_quietly`], over all threads.
static QUIET: AtomicUsize = AtomicUsize::new(0);
/// The message of the last panic caught quietly.
static LAST: Mutex<Option<String>> = Mutex::new(None);
static HOOK: Once = Once::new();

fn message(info: &PanicHookInfo<'_>) -> String {
    let payload = info
        .payload()
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned());
    match info.location() {
        Some(l) => format!("{payload} ({}:{})", l.file(), l.line()),
        None => payload,
    }
}

/// Runs `f`; a panic inside it (or in threads it scopes) is returned as `Err` with
/// its message instead of unwinding, and is not printed.
pub(crate) fn catch_quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.load(Ordering::SeqCst) > 0 {
                if let Ok(mut last) = LAST.lock() {
                    *last = Some(message(info));
                }
            } else {
                previous(info);
            }
        }));
    });
    QUIET.fetch_add(1, Ordering::SeqCst);
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.fetch_sub(1, Ordering::SeqCst);
    result.map_err(|_| {
        LAST.lock()
            .ok()
            .and_then(|mut l| l.take())
            .unwrap_or_else(|| "a panic while reading it".to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_with_its_message() {
        let r: Result<(), String> = catch_quietly(|| panic!("entered unreachable code"));
        let e = r.unwrap_err();
        assert!(e.contains("entered unreachable code"), "{e}");
        assert_eq!(catch_quietly(|| 7), Ok(7));
    }
}
