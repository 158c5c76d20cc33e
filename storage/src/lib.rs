//! raxe-storage
