//! Progress of long commands on stderr: a bar (or, for one long step, a spinner with the
//! elapsed time) when stderr is a terminal, nothing under `--json` or in logs, where the
//! commands print their own lines instead.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::backends::BackendKind;

/// A progress display that may be off; every method is a no-op then.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

/// Whether to draw: on a terminal, unless the command was asked for JSON.
pub fn shown(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

impl Progress {
    /// A bar of `total` steps counted in `unit` ("windows", "trials", "steps"), with the
    /// elapsed time and an estimate of the rest.
    pub fn bar(total: usize, unit: &str, json: bool) -> Self {
        let template = format!("{{bar:30}} {{pos}}/{{len}} {unit}, {{elapsed}} (eta {{eta}}) {{msg}}");
        Self::drawn(shown(json), || {
            ProgressBar::new(total as u64).with_style(style(&template))
        })
    }

    /// A spinner with the elapsed time, for one long step that cannot report its own
    /// progress (a forward pass that first compiles its kernels).
    pub fn spinner(message: &str, json: bool) -> Self {
        let progress = Self::drawn(shown(json), || {
            ProgressBar::new_spinner().with_style(style("{spinner} {msg} ({elapsed})"))
        });
        if let Some(bar) = &progress.bar {
            bar.set_message(message.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        progress
    }

    fn drawn(shown: bool, make: impl FnOnce() -> ProgressBar) -> Self {
        Self { bar: shown.then(make) }
    }

    /// One step done; `message` describes it.
    pub fn step(&self, message: impl Into<String>) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.into());
            bar.inc(1);
        }
    }

    /// Prints `line` on stderr, above the bar when one is drawn.
    pub fn println(&self, line: &str) {
        self.suspend(|| eprintln!("{line}"));
    }

    /// Runs `print` with the bar hidden, so that what it prints (to stdout or stderr) does not
    /// mix with the bar.
    pub fn suspend<T>(&self, print: impl FnOnce() -> T) -> T {
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    /// Removes the bar (as dropping it does, on success or error alike).
    pub fn finish(self) {}
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Says on stderr that `what` runs on `backend`, and shows a spinner while it does: on a GPU
/// backend the first call compiles its kernels, which can take minutes without any other sign
/// of life.
pub fn announce(what: &str, backend: BackendKind, json: bool) -> Progress {
    let note = match backend {
        BackendKind::NdArray | BackendKind::Flex => "",
        BackendKind::Wgpu | BackendKind::Cuda => " (the first run on a GPU compiles its kernels: this can take minutes)",
    };
    eprintln!("{what} on {backend}{note}");
    Progress::spinner(what, json)
}

fn style(template: &str) -> ProgressStyle {
    // The templates are constants of this module: a bad one is a bug caught by the tests.
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_turns_it_off_and_the_templates_parse() {
        assert!(!shown(true));
        assert!(Progress::bar(3, "steps", true).bar.is_none());
        assert!(Progress::spinner("forward pass", true).bar.is_none());
        for template in ["{bar:30} {pos}/{len} steps, {elapsed} (eta {eta}) {msg}", "{spinner} {msg} ({elapsed})"] {
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
    }
}
