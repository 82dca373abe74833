"""psi: ECDH private set intersection (X25519 + Elligator 2) for 2..N parties."""
