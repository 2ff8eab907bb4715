//! Helpers shared by weft's fuzz targets (`fuzz_targets/`).
//!
//! libfuzzer-sys aborts on every panic, even one that the code under test
//! catches on purpose (`SharedDoc` runs yrs under `catch_unwind` and
//! reports [`weft_core::shared_doc::SyncError::Poisoned`]). [`run`] makes
//! the targets judge what the public functions do instead: a panic caught
//! inside them is their business, a panic that escapes them is a crash,
//! reported with its message and location before the process aborts. Set
//! `WEFT_FUZZ_STRICT=1` to abort on caught panics too (to hunt for yrs
//! panics that the hub survives).

use std::backtrace::Backtrace;
use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    static LAST_PANIC: RefCell<Option<(String, Backtrace)>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

fn install_hook() {
    HOOK.call_once(|| {
        let strict = std::env::var_os("WEFT_FUZZ_STRICT").is_some_and(|v| v != "0");
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if strict {
                default(info);
                std::process::abort();
            }
            let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(non-string payload)".to_owned());
            let text = format!("panicked at {}: {message}", location.as_deref().unwrap_or("?"));
            // Symbolised only if the panic escapes (see `run`).
            LAST_PANIC.with(|last| *last.borrow_mut() = Some((text, Backtrace::force_capture())));
        }));
    });
}

/// Runs one fuzz input. A panic that the code under test catches itself
/// is allowed; one that escapes `body` is printed and aborts the process,
/// which libFuzzer records as a crash.
pub fn run(body: impl FnOnce()) {
    install_hook();
    if panic::catch_unwind(AssertUnwindSafe(body)).is_err() {
        match LAST_PANIC.with(|last| last.borrow_mut().take()) {
            Some((text, backtrace)) => eprintln!("weft-fuzz: a panic escaped the code under test: {text}\n{backtrace}"),
            None => eprintln!("weft-fuzz: a panic escaped the code under test"),
        }
        std::process::abort();
    }
}
