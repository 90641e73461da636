/* Byte-level BPE (GPT-2's scheme): text is split by the GPT-2 pre-tokenizer
   (pretokenize.h), each piece's bytes start as one symbol each, and adjacent
   pairs merge lowest merge rank first, leftmost on ties (Hugging Face
   tokenizers' order), until no pair has a merge. Tokens are stored twice: as
   their byte-mapped strings (GPT-2's bytes_to_unicode, 'Ġ' for a space) for
   token_to_id/id_to_token, and as raw bytes for decoding. Loading and the
   public functions are declared in runtime/tide_api.h (tide_bpe_*). */
#ifndef TIDE_BPE_H
#define TIDE_BPE_H
#include "tide.h"

/* The code point GPT-2's bytes_to_unicode gives byte b. */
uint32_t tide_bpe_byte_char(unsigned b);

/* 0 when tokenizer.json doc asks only for what tide implements (GPT-2's
   byte-level BPE; null or absent parts count as that); otherwise fails with
   a message, prefixed by where, naming the field (runtime/bpe_settings.c). */
int tide_bpe_check_settings(const tide_json *doc, const char *where);

#endif
