"""Model kinds behind one Decoder protocol, the tokenizer, batched KV-cache generation, precision."""
