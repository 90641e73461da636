/* Byte-level BPE training, merge for merge and id for id what Hugging Face
   tokenizers' BpeTrainer learns with the ByteLevel pre-tokenizer: texts are
   split by the GPT-2 pre-tokenizer (pretokenize.h) and the distinct pieces
   counted (memory follows the distinct pieces, not the corpus); training
   puts the special tokens first, then the byte-level alphabet sorted by code
   point, then merges, the highest pair count first (64-bit counts) and the
   smaller (left id, right id) pair on ties. The public functions are the
   tide_bpe_trainer_* of runtime/tide_api.h. */
#ifndef TIDE_BPE_TRAIN_H
#define TIDE_BPE_TRAIN_H
#include "tide.h"

#endif
