/* Host driver for motor_link.c (test/test_firmware_logic.py). Reads commands from stdin, one per
 * line, and prints one result line per command:
 *   cfg TIMEOUT_MS FALLBACK LATCH MIN MAX  -> "cfg TIMEOUT_MS FALLBACK LATCH MIN MAX" (sanitised)
 *   decode HEX                             -> "decode STATUS VERSION FLAGS SEQ M1 M2 M3 M4"
 *   encode FLAGS SEQ M1 M2 M3 M4            -> "encode HEX"
 *   rx T_US HEX                            -> "rx STATUS STATE"
 *   tick T_US                              -> "out KIND R1 R2 R3 R4 STATE TRIP"
 *   stats                                  -> "stats ACCEPTED LEN VER CRC FLAGS SEQ TRIPS"
 * HEX is the packet as hex digits ("-" for an empty packet). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "motor_link.h"

static size_t parse_hex(const char *hex, uint8_t *buf, size_t cap)
{
  size_t n = 0;
  unsigned int byte;
  if (strcmp(hex, "-") == 0) return 0;
  while (hex[0] && hex[1] && n < cap && sscanf(hex, "%2x", &byte) == 1) {
    buf[n++] = (uint8_t)byte;
    hex += 2;
  }
  return n;
}

int main(void)
{
  char line[512], cmd[16], hex[256];
  uint8_t buf[64];
  ml_link_t link;
  ml_config_t cfg;
  ml_packet_t pkt;
  unsigned long long t;
  float ratio[ML_NUM_MOTORS];
  int i;

  ml_config_default(&cfg);
  ml_link_init(&link);
  while (fgets(line, sizeof(line), stdin)) {
    if (sscanf(line, "%15s", cmd) != 1) continue;
    if (strcmp(cmd, "cfg") == 0) {
      unsigned int timeout, fallback, latch;
      if (sscanf(line, "cfg %u %u %u %f %f", &timeout, &fallback, &latch, &cfg.min_ratio, &cfg.max_ratio) != 5) return 2;
      cfg.timeout_ms = (uint16_t)timeout;
      cfg.fallback = (uint8_t)fallback;
      cfg.latch = (uint8_t)latch;
      ml_config_sanitize(&cfg);
      printf("cfg %u %u %u %.9g %.9g\n", cfg.timeout_ms, cfg.fallback, cfg.latch, cfg.min_ratio, cfg.max_ratio);
    } else if (strcmp(cmd, "decode") == 0) {
      ml_status_t s;
      if (sscanf(line, "decode %255s", hex) != 1) return 2;
      memset(&pkt, 0, sizeof(pkt));
      s = ml_decode(buf, parse_hex(hex, buf, sizeof(buf)), &pkt);
      printf("decode %d %u %u %u %u %u %u %u\n", (int)s, pkt.version, pkt.flags, pkt.sequence,
             pkt.motor[0], pkt.motor[1], pkt.motor[2], pkt.motor[3]);
    } else if (strcmp(cmd, "encode") == 0) {
      unsigned int flags, seq, m[4];
      size_t n;
      if (sscanf(line, "encode %u %u %u %u %u %u", &flags, &seq, &m[0], &m[1], &m[2], &m[3]) != 6) return 2;
      pkt.version = ML_PACKET_VERSION;
      pkt.flags = (uint8_t)flags;
      pkt.sequence = (uint16_t)seq;
      for (i = 0; i < ML_NUM_MOTORS; ++i) pkt.motor[i] = (uint16_t)m[i];
      n = ml_encode(&pkt, buf, sizeof(buf));
      printf("encode ");
      for (i = 0; i < (int)n; ++i) printf("%02x", buf[i]);
      printf("\n");
    } else if (strcmp(cmd, "rx") == 0) {
      ml_status_t s;
      if (sscanf(line, "rx %llu %255s", &t, hex) != 2) return 2;
      s = ml_receive(&link, &cfg, buf, parse_hex(hex, buf, sizeof(buf)), (uint64_t)t);
      printf("rx %d %d\n", (int)s, (int)link.state);
    } else if (strcmp(cmd, "tick") == 0) {
      ml_output_t out;
      if (sscanf(line, "tick %llu", &t) != 1) return 2;
      out = ml_update(&link, &cfg, (uint64_t)t, ratio);
      printf("out %d %.9g %.9g %.9g %.9g %d %d\n", (int)out, ratio[0], ratio[1], ratio[2], ratio[3],
             (int)link.state, ml_take_trip(&link));
    } else if (strcmp(cmd, "stats") == 0) {
      printf("stats %lu %lu %lu %lu %lu %lu %lu\n", (unsigned long)link.accepted, (unsigned long)link.err_length,
             (unsigned long)link.err_version, (unsigned long)link.err_crc, (unsigned long)link.err_flags,
             (unsigned long)link.err_sequence, (unsigned long)link.trips);
    } else {
      fprintf(stderr, "unknown command %s\n", cmd);
      return 2;
    }
    fflush(stdout);
  }
  return 0;
}
