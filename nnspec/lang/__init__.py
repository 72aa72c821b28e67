"""The language front end: source text -> syntax nodes (parse) -> definitions by name (resolve)
-> the checked IR with every shape inferred (check), plus the `train`/`parallel` settings
(sections, config) and the diagnostics every pass reports through."""
