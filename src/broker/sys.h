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

struct moat_sec_event;

/*
 * Publishes a security event as JSON on $SYS/moat/security/<kind> (not
 * retained), for subscribers the ACL allows. For one thread at a time: the
 * sentinel's has its own struct moat_sys.
 */
void moat_sys_security(struct moat_sys *sys, const struct moat_sec_event *e);

#endif
