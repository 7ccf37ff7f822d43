// `checksum`: a sluice op in C.
//
// Reads a file of the job's workspace (`{"path": "build/app.tar"}`) and returns its size and
// CRC-32, so that later steps can check an artifact did not change between build and deploy.
// It needs `workspace:read-only`. The bindings (op.h, op.c, op_component_type.o) come from
// wit-bindgen's C generator; see README.md.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "op.h"

static void set_failure(op_outcome_t *ret, const char *message) {
  ret->tag = SLUICE_OP_TYPES_OUTCOME_FAILURE;
  op_string_dup(&ret->val.failure.message, message);
  ret->val.failure.retryable = false;
  op_string_dup(&ret->val.failure.details, "");
}

void exports_op_describe(op_op_info_t *ret) {
  op_string_dup(&ret->name, "checksum");
  op_string_dup(&ret->version, "0.1.0");
  op_string_dup(&ret->description,
                "Size and CRC-32 of a file in the job's workspace (a C op)");
  op_string_dup(&ret->input_schema,
                "{\"type\":\"object\",\"required\":[\"path\"],\"additionalProperties\":false,"
                "\"properties\":{\"path\":{\"type\":\"string\","
                "\"description\":\"a file in the workspace, relative to it\"}}}");
  op_string_dup(&ret->output_schema, "");
  ret->idempotent = true;
  ret->can_rollback = false;
  ret->needs.len = 1;
  ret->needs.ptr = malloc(sizeof(sluice_op_types_capability_t));
  ret->needs.ptr[0].tag = SLUICE_OP_TYPES_CAPABILITY_WORKSPACE;
  ret->needs.ptr[0].val.workspace = SLUICE_OP_TYPES_ACCESS_READ_ONLY;
}

// The string value of `"key": "..."` in a flat JSON object, without escapes; NULL if absent.
static char *string_field(const op_string_t *json, const char *key) {
  char *text = strndup((const char *)json->ptr, json->len);
  char pattern[64];
  snprintf(pattern, sizeof pattern, "\"%s\"", key);
  char *at = strstr(text, pattern);
  char *value = NULL;
  if (at) {
    at = strchr(at + strlen(pattern), ':');
    if (at) at = strchr(at, '"');
    char *end = at ? strchr(at + 1, '"') : NULL;
    if (end && !memchr(at + 1, '\\', end - at - 1)) value = strndup(at + 1, end - at - 1);
  }
  free(text);
  return value;
}

static uint32_t crc32_update(uint32_t crc, const unsigned char *buf, size_t len) {
  crc = ~crc;
  for (size_t i = 0; i < len; i++) {
    crc ^= buf[i];
    for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & -(crc & 1));
  }
  return ~crc;
}

void exports_op_run(op_job_context_t *ctx, op_string_t *input, op_outcome_t *ret) {
  (void)ctx;
  char *path = string_field(input, "path");
  char message[512];
  if (!path || !*path || path[0] == '/' || strstr(path, "..")) {
    set_failure(ret, "`path` must name a file inside the workspace, such as build/app.tar");
    free(path);
    return;
  }
  char full[1024];
  snprintf(full, sizeof full, "/workspace/%s", path);
  FILE *f = fopen(full, "rb");
  if (!f) {
    snprintf(message, sizeof message,
             "cannot open %s (is `workspace:read-only` granted, and the file there?)", full);
    set_failure(ret, message);
    free(path);
    return;
  }
  // Static: the default shadow stack of a wasm32 C program is only 64 KiB.
  static unsigned char buf[65536];
  size_t n, size = 0;
  uint32_t crc = 0;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
    crc = crc32_update(crc, buf, n);
    size += n;
  }
  fclose(f);

  snprintf(message, sizeof message, "%s: %zu bytes, crc32 %08x", path, size, crc);
  op_string_t line;
  op_string_set(&line, message);
  sluice_op_host_log(SLUICE_OP_TYPES_LOG_LEVEL_INFO, &line);

  char output[1200];
  snprintf(output, sizeof output, "{\"path\":\"%s\",\"bytes\":%zu,\"crc32\":\"%08x\"}", path,
           size, crc);
  ret->tag = SLUICE_OP_TYPES_OUTCOME_SUCCESS;
  op_string_dup(&ret->val.success, output);
  free(path);
}

void exports_op_resume(op_job_context_t *ctx, op_string_t *input, op_list_u8_t *state,
                       op_decision_t *decision, op_outcome_t *ret) {
  (void)ctx, (void)input, (void)state, (void)decision;
  set_failure(ret, "checksum opens no gates, so it cannot resume");
}

void exports_op_rollback(op_job_context_t *ctx, op_string_t *input, op_string_t *output,
                         op_outcome_t *ret) {
  (void)ctx, (void)input, (void)output;
  set_failure(ret, "checksum cannot roll back");
}
