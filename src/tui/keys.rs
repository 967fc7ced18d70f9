//! The key table the help overlay and the status bar's hints are drawn from. Keep it in step
//! with `App::handle_key`: a test presses every key listed here and fails on one that does nothing.

/// (keys, what they do), in the order the help overlay lists them.
pub const KEY_HELP: &[(&str, &str)] = &[
    (
        "q  Ctrl-c",
        "quit (with unsaved edits it asks first: press again to quit)",
    ),
    ("Esc", "close a popup; clear search and selection"),
    (
        "j k  ↓ ↑",
        "next / previous unit (in the word list: next / previous word)",
    ),
    ("PgDn PgUp", "page down / up (also Ctrl-f / Ctrl-b)"),
    ("Ctrl-d Ctrl-u", "half a page down / up"),
    ("gg  G", "first / last unit (also Home / End)"),
    ("Tab  Shift-Tab", "switch between text and word list"),
    ("Enter", "in the word list: select the word in the text"),
    ("]  [", "next / previous influential word"),
    ("c", "cycle the target class (predicted, then each class)"),
    ("1-9  0", "explain class 1-9 / the predicted class"),
    ("C", "contrast two classes: R(A) − R(B); again: next B"),
    ("m", "pick the relevance method"),
    ("n", "cycle normalisation (maxabs, minmax, l1, none)"),
    ("n  N", "while searching: next / previous hit"),
    ("p", "cycle the palette"),
    ("w", "words / word-pieces"),
    ("/", "search (ASCII case-insensitive)"),
    ("e", "export the visible units as HTML or JSON"),
    (
        "i",
        "edit the unit (colours follow as you type; Enter keeps, Esc drops)",
    ),
    (
        "Ctrl-s",
        "write edits to the file (nothing is written otherwise; also in i)",
    ),
    (
        "r",
        "reload the file (it also reloads when changed on disk)",
    ),
    ("? F1", "this help (j/k, PgDn/PgUp or the wheel scroll it)"),
    (
        "mouse",
        "click a word for its details; the wheel scrolls 3 rows",
    ),
];

/// The short hints on the status bar.
pub const HINTS: &[(&str, &str)] = &[
    ("?", "help"),
    ("q", "quit"),
    ("j/k", "move"),
    ("c", "class"),
    ("C", "contrast"),
    ("m", "method"),
    ("n", "norm"),
    ("]", "next word"),
    ("/", "search"),
    ("i", "edit"),
    ("e", "export"),
];
