/*
 * sys.h - the $SYS topics (Mosquitto's names), published by the main thread
 * every sys_interval seconds as retained messages.
 */
#ifndef MOAT_BROKER_SYS_H
#define MOAT_BROKER_SYS_H

struct moat_broker;
struct moat_sys;

struct moat_sys *moat_sys_new(struct moat_broker *b);
void moat_sys_publish(struct moat_sys *sys);
void moat_sys_free(struct moat_sys *sys);

#endif
