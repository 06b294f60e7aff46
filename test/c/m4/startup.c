/* Minimal Cortex-M4F start-up for QEMU mps2-an386 (snn_drone's onboard tests): vector table,
 * reset handler (FPU on, .data copied, .bss zeroed, newlib semihosting handles opened) and fault
 * handlers that stop QEMU through semihosting with a failure status. */
#include <stdint.h>
#include <stdlib.h>

extern uint32_t _stack_top, _data_load, _data_start, _data_end, _bss_start, _bss_end;
extern int main(void);
extern void initialise_monitor_handles(void);

void Reset_Handler(void);
static void Fault_Handler(void);

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)

__attribute__((section(".vectors"), used))
static void (*const vector_table[16])(void) = {
  (void (*)(void))(&_stack_top), /* initial stack pointer */
  Reset_Handler,
  Fault_Handler, /* NMI */
  Fault_Handler, /* HardFault */
  Fault_Handler, /* MemManage */
  Fault_Handler, /* BusFault */
  Fault_Handler, /* UsageFault */
  0, 0, 0, 0,
  Fault_Handler, /* SVC */
  Fault_Handler, /* DebugMon */
  0,
  Fault_Handler, /* PendSV */
  Fault_Handler, /* SysTick (its interrupt stays disabled) */
};

/* semihosting SYS_EXIT with ADP_Stopped_RunTimeError: QEMU exits with status 1 */
static void Fault_Handler(void)
{
  register uint32_t op __asm__("r0") = 0x18u;
  register uint32_t reason __asm__("r1") = 0x20023u;
  __asm__ volatile("bkpt 0xab" : : "r"(op), "r"(reason) : "memory");
  for (;;) {
  }
}

void Reset_Handler(void)
{
  uint32_t *src = &_data_load, *dst = &_data_start;
  SCB_CPACR |= 0xFu << 20; /* CP10 and CP11 full access: the FPU */
  __asm__ volatile("dsb\n\tisb" ::: "memory");
  while (dst < &_data_end) *dst++ = *src++;
  for (dst = &_bss_start; dst < &_bss_end; ++dst) *dst = 0;
  initialise_monitor_handles();
  exit(main());
}
