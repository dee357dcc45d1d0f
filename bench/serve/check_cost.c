// Kernel cost of the open-file cache's per-request check, alone: statx of a path relative to
// the held root (the check before issue 13) against ioctl(FIONREAD) and read() on an empty
// inotify queue (the check now), with fstat and getppid for scale. Nanoseconds per call.
//   cc -O2 -o /tmp/check_cost bench/serve/check_cost.c && /tmp/check_cost DIR
// DIR must hold big.bin and a/b/c/big.bin (any size).
#define _GNU_SOURCE
#include <stdio.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <time.h>
#include <sys/syscall.h>
#include <errno.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
int main(int argc,char**argv){
  const char*dir=argv[1]; int N=2000000;
  int root=open(dir,O_RDONLY|O_DIRECTORY);
  int fd=openat(root,"big.bin",O_RDONLY);
  int in=inotify_init1(IN_NONBLOCK); inotify_add_watch(in,dir,IN_MODIFY|IN_MOVED_TO|IN_CREATE|IN_DELETE);
  char p[512]; snprintf(p,sizeof p,"%s/big.bin",dir); inotify_add_watch(in,p,IN_MODIFY|IN_ATTRIB);
  struct statx sx; struct stat st; char buf[4096]; int nr;
  for(int round=0;round<3;round++){
  double t=now(); for(int i=0;i<N;i++) syscall(SYS_getppid); double a=(now()-t)/N;
  t=now(); for(int i=0;i<N;i++) statx(root,"big.bin",AT_STATX_SYNC_AS_STAT,STATX_BASIC_STATS,&sx); double b=(now()-t)/N;
  t=now(); for(int i=0;i<N;i++) statx(root,"big.bin",AT_STATX_DONT_SYNC,STATX_BASIC_STATS,&sx); double c=(now()-t)/N;
  t=now(); for(int i=0;i<N;i++) fstat(fd,&st); double d=(now()-t)/N;
  t=now(); for(int i=0;i<N;i++) read(in,buf,sizeof buf); double e=(now()-t)/N;
  t=now(); for(int i=0;i<N;i++) ioctl(in,FIONREAD,&nr); double f=(now()-t)/N;
  t=now(); for(int i=0;i<N;i++) statx(root,"a/b/c/big.bin",AT_STATX_SYNC_AS_STAT,STATX_BASIC_STATS,&sx); double g=(now()-t)/N;
  t=now(); for(int i=0;i<N;i++) statx(fd,"",AT_EMPTY_PATH,STATX_BASIC_STATS,&sx); double h=(now()-t)/N;
  printf("ns/call: getppid %.0f statx %.0f statx_dontsync %.0f fstat %.0f inotify_read_eagain %.0f fionread %.0f statx_4deep %.0f statx_emptypath %.0f\n",a,b,c,d,e,f,g,h);
  }
}
