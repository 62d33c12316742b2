/* vktrain — umbrella header: includes every public module. */
#ifndef VKTRAIN_VKTRAIN_H
#define VKTRAIN_VKTRAIN_H

#include "vktrain/alloc.h"
#include "vktrain/comm.h"
#include "vktrain/config.h"
#include "vktrain/data.h"
#include "vktrain/dtype.h"
#include "vktrain/engine.h"
#include "vktrain/gpu.h"
#include "vktrain/nn.h"
#include "vktrain/scaler.h"
#include "vktrain/schedule.h"
#include "vktrain/status.h"
#include "vktrain/tensors.h"
#include "vktrain/version.h"

#endif
