//! Progress bars for long work (hidden when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};

pub fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let style =
        ProgressStyle::with_template("{msg:>18} [{bar:40}] {pos}/{len} ({elapsed}, eta {eta})")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

thread_local! {
    /// The bar of the forward passes this thread runs, and its message without the layer.
    static LAYER_BAR: std::cell::RefCell<Option<(ProgressBar, String)>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with `bar` showing the layer each forward pass on this thread has reached (a
/// batch of windows through a 7–8B model takes minutes on a CPU; its tokens count only
/// when the batch is done).
pub fn with_layers<T>(bar: &ProgressBar, f: impl FnOnce() -> T) -> T {
    let message = bar.message();
    LAYER_BAR.with(|b| *b.borrow_mut() = Some((bar.clone(), message.clone())));
    let out = f();
    LAYER_BAR.with(|b| *b.borrow_mut() = None);
    bar.set_message(message);
    out
}

/// Says that a forward pass on this thread finished layer `done` of the `of` it runs.
pub fn layer_done(done: usize, of: usize) {
    LAYER_BAR.with(|b| {
        if let Some((bar, message)) = b.borrow().as_ref() {
            bar.set_message(format!("{message}, layer {done}/{of}"));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forward_pass_shows_its_layer_on_the_bar_of_its_thread() {
        let bar = ProgressBar::hidden();
        bar.set_message("tokens");
        layer_done(1, 2);
        assert_eq!(bar.message(), "tokens", "no bar registered: nothing said");
        let seen = with_layers(&bar, || {
            layer_done(3, 30);
            let on_other_thread = std::thread::scope(|s| s.spawn(|| layer_done(9, 30)).join());
            on_other_thread.unwrap();
            bar.message()
        });
        assert_eq!(seen, "tokens, layer 3/30");
        assert_eq!(bar.message(), "tokens", "the message is restored");
    }
}
