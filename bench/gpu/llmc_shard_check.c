/* Dry-run check of bench/gpu/run.sh: reads the shard tide wrote
 * (bench/gpu/llmc_data.lua) with llm.c's own DataLoader (llmc/dataloader.h of
 * the copy bench/gpu/fetch-llmc.sh places), as train_gpt2cu will on the GPU,
 * so a format mistake shows here rather than in the one GPU run.
 *   cc -O1 -I.llmc bench/gpu/llmc_shard_check.c -o /tmp/llmc_shard_check -lm
 *   /tmp/llmc_shard_check 'DIR/train_*.bin' B T */
#include <stdio.h>
#include <stdlib.h>
#include "llmc/dataloader.h"

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s PATTERN B T\n", argv[0]); return 2; }
    int B = atoi(argv[2]), T = atoi(argv[3]);
    DataLoader loader;
    /* the train loader's settings: rank 0 of 1, shuffled */
    dataloader_init(&loader, argv[1], B, T, 0, 1, 1);
    dataloader_next_batch(&loader);
    int ok = 1;
    for (int i = 0; i < B * T; i++) {
        if (loader.inputs[i] < 0 || loader.inputs[i] >= 50257) ok = 0;
        /* targets are the inputs shifted by one within each row's window */
        if (i % T != T - 1 && loader.targets[i] != loader.inputs[i + 1]) ok = 0;
    }
    printf("llm.c DataLoader: %zu tokens, %zu batches of B=%d T=%d per epoch; first ids %d %d %d; %s\n",
           loader.num_tokens, loader.shard_num_samples, B, T, loader.inputs[0], loader.inputs[1], loader.inputs[2],
           ok ? "ids in range and targets shifted" : "BAD ids or targets");
    dataloader_free(&loader);
    return ok ? 0 : 1;
}
