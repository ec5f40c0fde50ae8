//! OpenEG HTTP layer (work in progress).
