/* nabla/io.h — named tensor collections (state dicts) and checkpoints in the
 * safetensors format.
 *
 * A state dict maps names ("layers.0.weight", "state.3.exp_avg") to tensors,
 * in insertion order; it retains what it holds. Checkpoints are safetensors
 * files (8-byte little-endian header length, a JSON header with each
 * tensor's dtype, shape and data offsets, then the raw little-endian data),
 * so PyTorch (safetensors.torch) and the wider ecosystem read what nabla
 * writes and the other way round. Writes go to a temporary file in the same
 * directory, are flushed and fsync'ed, then renamed over the target: a crash
 * mid-save never destroys the previous checkpoint.
 */
#ifndef NABLA_IO_H
#define NABLA_IO_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nb_state_dict nb_state_dict;

NB_API nb_state_dict *nb_state_dict_new(void);
NB_API void nb_state_dict_free(nb_state_dict *sd);              /* releases the tensors; NULL ok */
/* Adds (or replaces) name -> t; t is retained, name copied. 0 or NB_E*. */
NB_API int nb_state_dict_set(nb_state_dict *sd, const char *name, nb_tensor *t);
NB_API nb_tensor *nb_state_dict_get(const nb_state_dict *sd, const char *name);  /* borrowed or NULL */
NB_API int nb_state_dict_size(const nb_state_dict *sd);
/* The i-th entry in insertion order (borrowed); NULL when out of range. */
NB_API const char *nb_state_dict_name(const nb_state_dict *sd, int i);
NB_API nb_tensor *nb_state_dict_tensor(const nb_state_dict *sd, int i);

/* Writes sd as safetensors (F32 "F32", F64 "F64", I64 "I64", BOOL "BOOL"),
 * with optional string metadata pairs (NULL-terminated key, value list, may
 * be NULL). Atomic as said above. Returns 0 or NB_E* (the target untouched). */
NB_API int nb_save_safetensors(const char *path, const nb_state_dict *sd, const char *const *metadata);
/* Reads a safetensors file into a new state dict (free it). A truncated,
 * corrupt or hostile file (header length past the end, bad JSON, unknown
 * dtype, offsets out of range, overlapping or not matching the shape) gives
 * NULL with a message naming the file and the problem. Dtypes other than the
 * four above (F16, BF16, ...) are rejected with NB_EDTYPE. */
NB_API nb_state_dict *nb_load_safetensors(const char *path);

#ifdef __cplusplus
}
#endif
#endif
