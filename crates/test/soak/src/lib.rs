//! The invariants under fire (I1–I5, `architecture.md`): the bad-input suite lives in
//! `tests/bad_input/`; the soak that runs the built services as OS processes comes here.
