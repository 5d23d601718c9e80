"""How an attack becomes an image + query: jailbreak text templates and typographic images."""
