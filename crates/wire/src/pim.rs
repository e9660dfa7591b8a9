//! TODO: pim (being written)
