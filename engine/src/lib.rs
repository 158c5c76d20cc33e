//! raxe-engine
