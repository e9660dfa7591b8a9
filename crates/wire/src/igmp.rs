//! TODO: igmp (being written)
