//! The one audited FFI module: every `unsafe` line of mugge's plugin is here.
//!
//! What it does: exports `spa_handle_factory_enum` with three factories, implements the
//! `spa_handle` and `spa_node` vtables on top of the safe [`MainSide`]/[`RtSide`] pair, walks
//! hook lists (the `spa_node_emit_*` macros do not exist in the bindings), reads the IO areas and
//! buffers on the data loop.
//!
//! Invariants the whole module relies on:
//! - `State` is boxed once in `init` and freed in `clear`; its address is the `object` of every
//!   node method and the `data` of the timer. PipeWire calls node methods on the main loop only,
//!   except `process` and `port_reuse_buffer` (data loop).
//! - `Rt` (everything `process` touches) is boxed separately and touched only on the data loop:
//!   from `process`, `port_reuse_buffer` and `on_data_msg` (run by `spa_loop_invoke`). The main
//!   loop sends it plain-data `DataMsg`s by value through a blocking invoke, so IO areas and
//!   buffers are swapped on the data loop, never written while `process` runs.
//! - No `&mut State` lives across a hook emission: listeners re-enter node methods.
//! - Every `extern "C"` entry runs its body under `catch_unwind` and turns a panic into `-EIO`
//!   (a panic unwinding into C would abort the whole PipeWire daemon).

use crate::node::{self, Config, Control, Cycle, Direction, Kind, MainSide, PortLayout, RtSide};
use crate::params;
use libspa_sys as sys;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

const EIO: c_int = 5;
const ENOENT: c_int = 2;
const EINVAL: c_int = 22;
const ENOSPC: c_int = 28;
const ENOTSUP: c_int = 95;

const MAX_BUFFERS: usize = params::MAX_BUFFERS as usize;
const MAX_CH: usize = mugge_dsp::MAX_CHANNELS;

/// Runs `f`, mapping a panic to `err`.
fn guard<T>(err: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(err)
}

// ---------------------------------------------------------------------------------------------
// Factories

struct SyncFactory(sys::spa_handle_factory);
// SAFETY: the factory is immutable static data (pointers to static C strings and functions).
unsafe impl Sync for SyncFactory {}

struct SyncIfaceInfo(sys::spa_interface_info);
// SAFETY: immutable static data pointing to a static C string.
unsafe impl Sync for SyncIfaceInfo {}

struct SyncMethods(sys::spa_node_methods);
// SAFETY: immutable static table of function pointers.
unsafe impl Sync for SyncMethods {}

const fn factory(
    name: &'static CStr,
    init: unsafe extern "C" fn(
        *const sys::spa_handle_factory,
        *mut sys::spa_handle,
        *const sys::spa_dict,
        *const sys::spa_support,
        u32,
    ) -> c_int,
) -> SyncFactory {
    SyncFactory(sys::spa_handle_factory {
        version: sys::SPA_VERSION_HANDLE_FACTORY,
        name: name.as_ptr(),
        info: ptr::null(),
        get_size: Some(get_size),
        init: Some(init),
        enum_interface_info: Some(enum_interface_info),
    })
}

static FACTORIES: [SyncFactory; 3] = [
    factory(c"mugge.meter", init_meter),
    factory(c"mugge.tap", init_tap),
    factory(c"mugge.siggen", init_siggen),
];

static NODE_IFACE_INFO: SyncIfaceInfo = SyncIfaceInfo(sys::spa_interface_info {
    type_: sys::SPA_TYPE_INTERFACE_Node.as_ptr() as *const c_char,
});

/// The plugin's entry point: PipeWire enumerates the factories by index.
///
/// # Safety
/// `factory` and `index` must be valid pointers (PipeWire's plugin loader guarantees this).
#[no_mangle]
pub unsafe extern "C" fn spa_handle_factory_enum(
    factory: *mut *const sys::spa_handle_factory,
    index: *mut u32,
) -> c_int {
    guard(-EIO, || {
        if factory.is_null() || index.is_null() {
            return -EINVAL;
        }
        // SAFETY: both pointers checked non-null; the loader passes valid storage.
        unsafe {
            match FACTORIES.get(*index as usize) {
                Some(f) => {
                    *factory = &f.0;
                    *index += 1;
                    1
                }
                None => 0,
            }
        }
    })
}

unsafe extern "C" fn get_size(
    _f: *const sys::spa_handle_factory,
    _p: *const sys::spa_dict,
) -> usize {
    std::mem::size_of::<Handle>()
}

unsafe extern "C" fn enum_interface_info(
    _f: *const sys::spa_handle_factory,
    info: *mut *const sys::spa_interface_info,
    index: *mut u32,
) -> c_int {
    guard(-EIO, || {
        if info.is_null() || index.is_null() {
            return -EINVAL;
        }
        // SAFETY: checked non-null; caller-provided storage.
        unsafe {
            if *index == 0 {
                *info = &NODE_IFACE_INFO.0;
                *index += 1;
                1
            } else {
                0
            }
        }
    })
}

macro_rules! init_fn {
    ($name:ident, $kind:expr) => {
        unsafe extern "C" fn $name(
            _f: *const sys::spa_handle_factory,
            handle: *mut sys::spa_handle,
            info: *const sys::spa_dict,
            support: *const sys::spa_support,
            n_support: u32,
        ) -> c_int {
            // SAFETY: forwarded verbatim from the host, which upholds init()'s contract.
            guard(-EIO, || unsafe {
                init($kind, handle, info, support, n_support)
            })
        }
    };
}
init_fn!(init_meter, Kind::Meter);
init_fn!(init_tap, Kind::Tap);
init_fn!(init_siggen, Kind::Siggen);

// ---------------------------------------------------------------------------------------------
// Handle and state

/// Host-allocated (size from `get_size`): `spa_handle` first, alignment 8.
#[repr(C)]
struct Handle {
    handle: sys::spa_handle,
    node: sys::spa_node,
    state: *mut State,
}

/// Main-loop state of one node.
struct State {
    main: Box<dyn MainSide>,
    rt: *mut Rt,
    hooks: sys::spa_hook_list,
    log: *mut sys::spa_log,
    data_loop: *mut sys::spa_loop,
    utils: *mut sys::spa_loop_utils,
    timer: *mut sys::spa_source,
    info_strings: Vec<(CString, CString)>,
    info_items: Vec<sys::spa_dict_item>,
    info_dict: sys::spa_dict,
    node_params: [sys::spa_param_info; 2],
    layout: PortLayout,
    ports: Vec<PortState>,
}

/// Main-loop state of one port.
struct PortState {
    params: [sys::spa_param_info; 5],
    have_format: bool,
    /// Port properties (DSP ports only). `dict` points into `items`, `items` into `strings`:
    /// built once in `init`, never changed (moving the struct does not move the heap buffers).
    _strings: Vec<(CString, CString)>,
    _items: Vec<sys::spa_dict_item>,
    dict: sys::spa_dict,
}

impl PortState {
    fn new(props: Vec<(String, String)>) -> PortState {
        let strings: Vec<(CString, CString)> = props
            .into_iter()
            .filter_map(|(k, v)| Some((CString::new(k).ok()?, CString::new(v).ok()?)))
            .collect();
        let items: Vec<sys::spa_dict_item> = strings
            .iter()
            .map(|(k, v)| sys::spa_dict_item {
                key: k.as_ptr(),
                value: v.as_ptr(),
            })
            .collect();
        let dict = sys::spa_dict {
            flags: 0,
            n_items: items.len() as u32,
            items: items.as_ptr(),
        };
        PortState {
            params: [
                param_info(sys::SPA_PARAM_EnumFormat, sys::SPA_PARAM_INFO_READ),
                param_info(sys::SPA_PARAM_Meta, 0),
                param_info(sys::SPA_PARAM_IO, sys::SPA_PARAM_INFO_READ),
                param_info(sys::SPA_PARAM_Format, sys::SPA_PARAM_INFO_WRITE),
                param_info(sys::SPA_PARAM_Buffers, 0),
            ],
            have_format: false,
            dict,
            _strings: strings,
            _items: items,
        }
    }
}

/// Data-loop state of one node.
struct Rt {
    side: Box<dyn RtSide>,
    direction: Direction,
    layout: PortLayout,
    channels: usize,
    rate: u32,
    rate_match: *mut sys::spa_io_rate_match,
    position: *mut sys::spa_io_position,
    /// 1 (planar) or `channels` (DSP).
    n_ports: usize,
    ports: [RtPort; MAX_CH],
}

/// Data-loop state of one port: its IO area and the buffers it was given.
#[derive(Clone, Copy)]
struct RtPort {
    io: *mut sys::spa_io_buffers,
    buffers: [*mut sys::spa_buffer; MAX_BUFFERS],
    n_buffers: usize,
    free: [u32; MAX_BUFFERS],
    n_free: usize,
}

const RT_PORT_EMPTY: RtPort = RtPort {
    io: ptr::null_mut(),
    buffers: [ptr::null_mut(); MAX_BUFFERS],
    n_buffers: 0,
    free: [0; MAX_BUFFERS],
    n_free: 0,
};

/// Silence for a DSP input that is not linked (or got no buffer this cycle): every channel
/// still sees a full cycle, so a tap's frames stay whole.
static ZEROS: [f32; params::MAX_QUANTUM as usize] = [0.0; params::MAX_QUANTUM as usize];

/// Messages from the main loop to the data loop. Plain data, copied by `spa_loop_invoke`.
#[derive(Clone, Copy)]
enum DataMsg {
    Io(usize, *mut sys::spa_io_buffers),
    RateMatch(*mut sys::spa_io_rate_match),
    Position(*mut sys::spa_io_position),
    Buffers(usize, [*mut sys::spa_buffer; MAX_BUFFERS], usize),
    Control(Control),
}

fn param_info(id: u32, flags: u32) -> sys::spa_param_info {
    sys::spa_param_info {
        id,
        flags,
        user: 0,
        seq: 0,
        padding: [0; 4],
    }
}

/// Reads the host's dict into an owned map.
///
/// # Safety
/// `dict` is null or a valid `spa_dict` whose items hold null or NUL-terminated strings.
unsafe fn dict_to_config(dict: *const sys::spa_dict) -> Config {
    let mut cfg = Config::default();
    if dict.is_null() {
        return cfg;
    }
    // SAFETY: per the contract, `dict` is valid and `items` has `n_items` entries.
    unsafe {
        let d = &*dict;
        for i in 0..d.n_items as usize {
            let it = &*d.items.add(i);
            if it.key.is_null() || it.value.is_null() {
                continue;
            }
            let (k, v) = (CStr::from_ptr(it.key), CStr::from_ptr(it.value));
            if let (Ok(k), Ok(v)) = (k.to_str(), v.to_str()) {
                cfg.0.insert(k.to_string(), v.to_string());
            }
        }
    }
    cfg
}

/// # Safety
/// `support` points to `n` valid entries (or is null with n = 0).
unsafe fn find_support(support: *const sys::spa_support, n: u32, ty: &[u8]) -> *mut c_void {
    if support.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: per the contract; `ty` is one of the NUL-terminated interface names.
    unsafe { sys::spa_support_find(support, n, ty.as_ptr() as *const c_char) }
}

/// Logs on the main loop (never called from `process`).
///
/// # Safety
/// `l` is null or the host's live logger.
unsafe fn log_to(l: *mut sys::spa_log, level: sys::spa_log_level, msg: &str) {
    // SAFETY: `l` is the host's logger or null; the format is "%s" with one NUL-terminated
    // string argument.
    unsafe {
        if l.is_null() || (*l).level < level {
            return;
        }
        let funcs = (*l).iface.cb.funcs as *const sys::spa_log_methods;
        if funcs.is_null() {
            return;
        }
        let Ok(text) = CString::new(msg.replace('\0', " ")) else {
            return;
        };
        if let Some(f) = (*funcs).log {
            f(
                (*l).iface.cb.data,
                level,
                c"mugge".as_ptr(),
                0,
                c"mugge".as_ptr(),
                c"%s".as_ptr(),
                text.as_ptr(),
            );
        }
    }
}

/// # Safety
/// `st` points to a live `State`.
unsafe fn log(st: *const State, level: sys::spa_log_level, msg: &str) {
    // SAFETY: live State; its logger is the host's or null.
    unsafe { log_to((*st).log, level, msg) }
}

/// # Safety
/// Called by the host with memory of `get_size()` bytes at `handle` and a valid support array.
unsafe fn init(
    kind: Kind,
    handle: *mut sys::spa_handle,
    info: *const sys::spa_dict,
    support: *const sys::spa_support,
    n_support: u32,
) -> c_int {
    if handle.is_null() {
        return -EINVAL;
    }
    // SAFETY: host contract for `info` and `support`.
    let (cfg, logp, data_loop, utils) = unsafe {
        (
            dict_to_config(info),
            find_support(support, n_support, sys::SPA_TYPE_INTERFACE_Log) as *mut sys::spa_log,
            find_support(support, n_support, sys::SPA_TYPE_INTERFACE_DataLoop)
                as *mut sys::spa_loop,
            find_support(support, n_support, sys::SPA_TYPE_INTERFACE_LoopUtils)
                as *mut sys::spa_loop_utils,
        )
    };
    let parts = cfg
        .port_layout()
        .and_then(|l| Ok((l, node::create(kind, &cfg)?)));
    let (layout, (main, side)) = match parts {
        Ok(parts) => parts,
        Err(e) => {
            // SAFETY: the host's logger or null.
            unsafe {
                log_to(
                    logp,
                    sys::SPA_LOG_LEVEL_ERROR,
                    &format!("{}: {e}", kind.factory_name()),
                )
            };
            return -EINVAL;
        }
    };
    let channels = main.channels() as usize;
    let n_ports = match layout {
        PortLayout::Planar => 1,
        PortLayout::Dsp => channels,
    };
    let ports: Vec<PortState> = (0..n_ports)
        .map(|i| {
            PortState::new(match layout {
                PortLayout::Planar => Vec::new(),
                PortLayout::Dsp => node::dsp_port_props(main.direction(), i as u32),
            })
        })
        .collect();
    let rt = Box::into_raw(Box::new(Rt {
        direction: main.direction(),
        layout,
        channels,
        rate: main.rate(),
        side,
        rate_match: ptr::null_mut(),
        position: ptr::null_mut(),
        n_ports,
        ports: [RT_PORT_EMPTY; MAX_CH],
    }));
    let mut strings: Vec<(CString, CString)> = main
        .info_props()
        .into_iter()
        .filter_map(|(k, v)| Some((CString::new(k).ok()?, CString::new(v).ok()?)))
        .collect();
    if layout == PortLayout::Dsp {
        // The registry then says which port is which channel (the adapter publishes this
        // itself for its own ports).
        strings.push((
            c"audio.position".into(),
            CString::new(node::dsp_positions(main.channels())).unwrap_or_default(),
        ));
    }
    if cfg.get("node.description").is_none() {
        strings.push((
            c"node.description".into(),
            CString::new(kind.description()).unwrap_or_default(),
        ));
    }
    let st = Box::into_raw(Box::new(State {
        main,
        rt,
        // SAFETY: an all-zero spa_hook_list is a valid value; it is initialised below.
        hooks: unsafe { std::mem::zeroed() },
        log: logp,
        data_loop,
        utils,
        timer: ptr::null_mut(),
        info_items: Vec::new(),
        info_strings: strings,
        info_dict: sys::spa_dict {
            flags: 0,
            n_items: 0,
            items: ptr::null(),
        },
        node_params: [
            param_info(sys::SPA_PARAM_PropInfo, sys::SPA_PARAM_INFO_READ),
            param_info(sys::SPA_PARAM_Props, sys::SPA_PARAM_INFO_READWRITE),
        ],
        layout,
        ports,
    }));
    // SAFETY: `st` was just allocated and is exclusively ours; `handle` has room for a Handle
    // (get_size) and is suitably aligned (host allocations are at least 8-aligned).
    unsafe {
        let s = &mut *st;
        s.info_items = s
            .info_strings
            .iter()
            .map(|(k, v)| sys::spa_dict_item {
                key: k.as_ptr(),
                value: v.as_ptr(),
            })
            .collect();
        s.info_dict = sys::spa_dict {
            flags: 0,
            n_items: s.info_items.len() as u32,
            items: s.info_items.as_ptr(),
        };
        sys::spa_hook_list_init(&mut s.hooks);
        if !utils.is_null() {
            s.timer = sys::spa_loop_utils_add_timer(utils, Some(on_timer), st as *mut c_void);
            if !s.timer.is_null() {
                let ms = s.main.poll_interval_ms().max(1);
                let mut ts = sys::timespec {
                    tv_sec: (ms / 1000) as _,
                    tv_nsec: ((ms % 1000) * 1_000_000) as _,
                };
                let mut iv = ts;
                sys::spa_loop_utils_update_timer(utils, s.timer, &mut ts, &mut iv, false);
            }
        }
        ptr::write(
            handle as *mut Handle,
            Handle {
                handle: sys::spa_handle {
                    version: sys::SPA_VERSION_HANDLE,
                    get_interface: Some(impl_get_interface),
                    clear: Some(impl_clear),
                },
                node: sys::spa_node {
                    iface: sys::spa_interface {
                        type_: sys::SPA_TYPE_INTERFACE_Node.as_ptr() as *const c_char,
                        version: sys::SPA_VERSION_NODE,
                        cb: sys::spa_callbacks {
                            funcs: &NODE_METHODS.0 as *const _ as *const c_void,
                            data: st as *mut c_void,
                        },
                    },
                },
                state: st,
            },
        );
        log(
            st,
            sys::SPA_LOG_LEVEL_INFO,
            &format!(
                "{} created: {:?}",
                kind.factory_name(),
                cfg.0.get("node.name")
            ),
        );
    }
    0
}

unsafe extern "C" fn impl_get_interface(
    handle: *mut sys::spa_handle,
    type_: *const c_char,
    iface: *mut *mut c_void,
) -> c_int {
    guard(-EIO, || {
        if handle.is_null() || type_.is_null() || iface.is_null() {
            return -EINVAL;
        }
        // SAFETY: `handle` is one of ours (initialised by init); `type_` is a C string.
        unsafe {
            let want = CStr::from_ptr(type_);
            if want.to_bytes_with_nul() == sys::SPA_TYPE_INTERFACE_Node {
                *iface = &mut (*(handle as *mut Handle)).node as *mut sys::spa_node as *mut c_void;
                0
            } else {
                -ENOENT
            }
        }
    })
}

unsafe extern "C" fn impl_clear(handle: *mut sys::spa_handle) -> c_int {
    guard(-EIO, || {
        if handle.is_null() {
            return -EINVAL;
        }
        // SAFETY: `handle` was initialised by init; the host calls clear once, on the main loop,
        // after the node left the graph (no process() can run any more).
        unsafe {
            let h = handle as *mut Handle;
            let st = (*h).state;
            if st.is_null() {
                return 0;
            }
            (*h).state = ptr::null_mut();
            if !(*st).timer.is_null() && !(*st).utils.is_null() {
                sys::spa_loop_utils_destroy_source((*st).utils, (*st).timer);
            }
            let rt = (*st).rt;
            drop(Box::from_raw(st));
            if !rt.is_null() {
                drop(Box::from_raw(rt));
            }
        }
        0
    })
}

// ---------------------------------------------------------------------------------------------
// Hook emission (the spa_node_emit_* macros, by hand)

/// Calls `f(events, data)` for each listener.
///
/// # Safety
/// `st` is live; listeners may re-enter node methods, so no reference into `*st` is held here.
unsafe fn for_each_listener(
    st: *mut State,
    mut f: impl FnMut(*const sys::spa_node_events, *mut c_void),
) {
    // SAFETY: the list is a valid circular spa_list of spa_hook (link is the first field). The
    // next pointer is read before each call so a listener may remove itself.
    unsafe {
        let head = ptr::addr_of_mut!((*st).hooks.list);
        let mut l = (*head).next;
        while !l.is_null() && l != head {
            let next = (*l).next;
            let hook = l as *mut sys::spa_hook;
            let events = (*hook).cb.funcs as *const sys::spa_node_events;
            if !events.is_null() {
                f(events, (*hook).cb.data);
            }
            l = next;
        }
    }
}

/// # Safety
/// `st` is live; main loop.
unsafe fn emit_node_info(st: *mut State, change_mask: u64) {
    // SAFETY: short-lived access to build the info; the struct handed out points into `*st`,
    // which outlives the emission.
    unsafe {
        let n = (*st).ports.len() as u32;
        let (inputs, outputs) = match (*st).main.direction() {
            Direction::Input => (n, 0),
            Direction::Output => (0, n),
        };
        let info = sys::spa_node_info {
            max_input_ports: inputs,
            max_output_ports: outputs,
            change_mask,
            flags: u64::from(sys::SPA_NODE_FLAG_RT),
            props: ptr::addr_of_mut!((*st).info_dict),
            params: ptr::addr_of_mut!((*st).node_params) as *mut sys::spa_param_info,
            n_params: 2,
        };
        for_each_listener(st, |ev, data| {
            if let Some(f) = (*ev).info {
                f(data, &info);
            }
        });
    }
}

/// Emits the info of every port.
///
/// # Safety
/// `st` is live; main loop.
unsafe fn emit_all_port_info(st: *mut State, change_mask: u64) {
    // SAFETY: live State; the port count never changes after init.
    unsafe {
        for p in 0..(*st).ports.len() {
            emit_port_info(st, p, change_mask);
        }
    }
}

/// # Safety
/// `st` is live; `port` < the port count; main loop.
unsafe fn emit_port_info(st: *mut State, port: usize, change_mask: u64) {
    // SAFETY: as in emit_node_info; the port's params and dict live in `*st`.
    unsafe {
        let dir = match (*st).main.direction() {
            Direction::Input => sys::SPA_DIRECTION_INPUT,
            Direction::Output => sys::SPA_DIRECTION_OUTPUT,
        };
        // A DSP input reads its buffer's data pointer afresh every cycle and keeps nothing
        // after `process`: DYNAMIC_DATA lets PipeWire's per-port mixer hand over the peer's
        // buffer instead of copying it (the copy was most of a 24-port node's cost).
        let flags = match (dir == sys::SPA_DIRECTION_INPUT, (*st).layout) {
            (true, PortLayout::Dsp) => {
                sys::SPA_PORT_FLAG_TERMINAL
                    | sys::SPA_PORT_FLAG_NO_REF
                    | sys::SPA_PORT_FLAG_DYNAMIC_DATA
            }
            (true, PortLayout::Planar) => sys::SPA_PORT_FLAG_TERMINAL,
            (false, _) => 0,
        };
        let ps = (*st).ports.as_mut_ptr().add(port);
        let (props, change_mask) = match (*st).layout {
            PortLayout::Planar => (ptr::null(), change_mask),
            PortLayout::Dsp => (
                ptr::addr_of!((*ps).dict),
                change_mask | u64::from(sys::SPA_PORT_CHANGE_MASK_PROPS),
            ),
        };
        let info = sys::spa_port_info {
            change_mask,
            flags: u64::from(flags),
            rate: sys::spa_fraction { num: 0, denom: 1 },
            props,
            params: ptr::addr_of_mut!((*ps).params) as *mut sys::spa_param_info,
            n_params: 5,
        };
        for_each_listener(st, |ev, data| {
            if let Some(f) = (*ev).port_info {
                f(data, dir, port as u32, &info);
            }
        });
    }
}

/// Tells listeners that `Props` changed: flips the param's serial bit (PipeWire caches params and
/// refreshes them only on such a change).
///
/// # Safety
/// `st` is live; main loop.
unsafe fn emit_props_changed(st: *mut State) {
    // SAFETY: short write to our own field, then emission without held references.
    unsafe {
        (*st).node_params[1].flags ^= sys::SPA_PARAM_INFO_SERIAL;
        emit_node_info(st, u64::from(sys::SPA_NODE_CHANGE_MASK_PARAMS));
    }
}

/// # Safety
/// `st` is live; main loop; `param` is valid for the duration of the call.
unsafe fn emit_param_result(
    st: *mut State,
    seq: c_int,
    id: u32,
    index: u32,
    param: *mut sys::spa_pod,
) {
    let result = sys::spa_result_node_params {
        id,
        index,
        next: index + 1,
        param,
    };
    // SAFETY: listeners receive a pointer to a local that outlives the calls.
    unsafe {
        for_each_listener(st, |ev, data| {
            if let Some(f) = (*ev).result {
                f(
                    data,
                    seq,
                    0,
                    sys::SPA_RESULT_TYPE_NODE_PARAMS,
                    &result as *const _ as *const c_void,
                );
            }
        });
    }
}

/// Emits `values[start..]` (up to `num` matches of `filter`) as param results.
///
/// # Safety
/// `st` is live; `filter` null or a valid pod; main loop.
unsafe fn emit_params(
    st: *mut State,
    seq: c_int,
    id: u32,
    start: u32,
    num: u32,
    filter: *const sys::spa_pod,
    values: Vec<libspa::pod::Value>,
) -> c_int {
    let mut count = 0;
    for (i, v) in values.iter().enumerate().skip(start as usize) {
        if count >= num {
            break;
        }
        let Some(mut bytes) = params::to_bytes(v) else {
            continue;
        };
        // Align for the pod header (u32 fields): copy into u64 storage.
        let mut store = vec![0u64; bytes.len().div_ceil(8)];
        // SAFETY: `store` has at least `bytes.len()` bytes.
        unsafe {
            ptr::copy_nonoverlapping(bytes.as_ptr(), store.as_mut_ptr() as *mut u8, bytes.len())
        };
        bytes.clear();
        let pod = store.as_mut_ptr() as *mut sys::spa_pod;
        if filter.is_null() {
            // SAFETY: `pod` is a serialized pod that lives until the end of this iteration.
            unsafe { emit_param_result(st, seq, id, i as u32, pod) };
        } else {
            let mut out = vec![0u64; store.len() * 2 + 512];
            // SAFETY: the builder writes only into `out` (size given); `pod` and `filter` are
            // valid pods; the result points into `out`, alive for the emission.
            unsafe {
                let mut b: sys::spa_pod_builder = std::mem::zeroed();
                sys::spa_pod_builder_init(
                    &mut b,
                    out.as_mut_ptr() as *mut c_void,
                    (out.len() * 8) as u32,
                );
                let mut res: *mut sys::spa_pod = ptr::null_mut();
                if sys::spa_pod_filter(&mut b, &mut res, pod, filter) < 0 || res.is_null() {
                    continue;
                }
                emit_param_result(st, seq, id, i as u32, res);
            }
        }
        count += 1;
    }
    0
}

/// Copies a host pod into owned bytes.
///
/// # Safety
/// `pod` is null or a valid pod (header plus `size` body bytes).
unsafe fn pod_bytes(pod: *const sys::spa_pod) -> Option<Vec<u8>> {
    if pod.is_null() {
        return None;
    }
    // SAFETY: per the contract the pod spans 8 + size bytes.
    unsafe {
        let len = 8usize.checked_add((*pod).size as usize)?;
        Some(std::slice::from_raw_parts(pod as *const u8, len).to_vec())
    }
}

/// Parses a `Format` pod with SPA's own parser.
///
/// # Safety
/// `pod` is a valid pod.
unsafe fn parse_format(pod: *const sys::spa_pod) -> Option<params::RawFormat> {
    let mut f = params::RawFormat::default();
    // SAFETY: valid pod per the contract; out-parameters are local.
    unsafe {
        if sys::spa_format_parse(pod, &mut f.media_type, &mut f.media_subtype) < 0 {
            return None;
        }
        if f.media_type == sys::SPA_MEDIA_TYPE_audio
            && f.media_subtype == sys::SPA_MEDIA_SUBTYPE_dsp
        {
            let mut info: sys::spa_audio_info_dsp = std::mem::zeroed();
            if sys::spa_format_audio_dsp_parse(pod, &mut info) < 0 {
                return None;
            }
            f.format = info.format;
            return Some(f);
        }
        if f.media_type != sys::SPA_MEDIA_TYPE_audio
            || f.media_subtype != sys::SPA_MEDIA_SUBTYPE_raw
        {
            return Some(f);
        }
        let mut info: sys::spa_audio_info_raw = std::mem::zeroed();
        if sys::spa_format_audio_raw_parse(pod, &mut info) < 0 {
            return None;
        }
        f.format = info.format;
        f.rate = info.rate;
        f.channels = info.channels;
    }
    Some(f)
}

// ---------------------------------------------------------------------------------------------
// Main loop -> data loop

unsafe extern "C" fn on_data_msg(
    _loop: *mut sys::spa_loop,
    _async: bool,
    _seq: u32,
    data: *const c_void,
    size: usize,
    user_data: *mut c_void,
) -> c_int {
    guard(-EIO, || {
        if data.is_null() || user_data.is_null() || size != std::mem::size_of::<DataMsg>() {
            return -EINVAL;
        }
        // SAFETY: `data` is a byte copy of a valid DataMsg made by `send_to_rt` (maybe unaligned);
        // `user_data` is our Rt, touched only on this (data) thread.
        unsafe {
            let msg = ptr::read_unaligned(data as *const DataMsg);
            apply_msg(&mut *(user_data as *mut Rt), msg);
        }
        0
    })
}

fn apply_msg(rt: &mut Rt, msg: DataMsg) {
    match msg {
        DataMsg::Io(port, p) => {
            if let Some(pt) = rt.ports.get_mut(port) {
                pt.io = p;
            }
        }
        DataMsg::RateMatch(p) => rt.rate_match = p,
        DataMsg::Position(p) => rt.position = p,
        DataMsg::Buffers(port, b, n) => {
            let output = rt.direction == Direction::Output;
            let Some(pt) = rt.ports.get_mut(port) else {
                return;
            };
            pt.buffers = b;
            pt.n_buffers = n;
            // Output buffers all start free; input buffers are owned by the peer.
            pt.n_free = if output { n } else { 0 };
            for (i, f) in pt.free.iter_mut().enumerate() {
                *f = i as u32;
            }
        }
        DataMsg::Control(c) => rt.side.control(c),
    }
}

/// Runs `msg` on the data loop and waits for it.
///
/// # Safety
/// `st` is live; main loop.
unsafe fn send_to_rt(st: *mut State, msg: DataMsg) {
    // SAFETY: `data_loop` is the host's data loop or null; the message is copied by value;
    // `rt` outlives the (blocking) call. Without a data loop nothing runs `process`, so the
    // message is applied here.
    unsafe {
        let rt = (*st).rt;
        let dl = (*st).data_loop;
        if dl.is_null() {
            apply_msg(&mut *rt, msg);
            return;
        }
        sys::spa_loop_invoke(
            dl,
            Some(on_data_msg),
            0,
            &msg as *const DataMsg as *const c_void,
            std::mem::size_of::<DataMsg>(),
            true,
            rt as *mut c_void,
        );
    }
}

unsafe extern "C" fn on_timer(data: *mut c_void, _expirations: u64) {
    guard((), || {
        let st = data as *mut State;
        if st.is_null() {
            return;
        }
        // SAFETY: the timer is destroyed before the State is freed; main loop.
        unsafe {
            if (*st).main.poll() {
                emit_props_changed(st);
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Node methods

static NODE_METHODS: SyncMethods = SyncMethods(sys::spa_node_methods {
    version: sys::SPA_VERSION_NODE_METHODS,
    add_listener: Some(node_add_listener),
    set_callbacks: Some(node_set_callbacks),
    sync: Some(node_sync),
    enum_params: Some(node_enum_params),
    set_param: Some(node_set_param),
    set_io: Some(node_set_io),
    send_command: Some(node_send_command),
    add_port: Some(node_add_port),
    remove_port: Some(node_remove_port),
    port_enum_params: Some(node_port_enum_params),
    port_set_param: Some(node_port_set_param),
    port_use_buffers: Some(node_port_use_buffers),
    port_set_io: Some(node_port_set_io),
    port_reuse_buffer: Some(node_port_reuse_buffer),
    process: Some(node_process),
});

const NODE_INFO_ALL: u64 = (sys::SPA_NODE_CHANGE_MASK_FLAGS
    | sys::SPA_NODE_CHANGE_MASK_PROPS
    | sys::SPA_NODE_CHANGE_MASK_PARAMS) as u64;
const PORT_INFO_ALL: u64 =
    (sys::SPA_PORT_CHANGE_MASK_FLAGS | sys::SPA_PORT_CHANGE_MASK_PARAMS) as u64;

unsafe extern "C" fn node_add_listener(
    object: *mut c_void,
    listener: *mut sys::spa_hook,
    events: *const sys::spa_node_events,
    data: *mut c_void,
) -> c_int {
    guard(-EIO, || {
        let st = object as *mut State;
        if st.is_null() || listener.is_null() || events.is_null() {
            return -EINVAL;
        }
        // SAFETY: `st` is our live State; isolate/join keep the list consistent while only the
        // new listener receives the initial info.
        unsafe {
            let mut save: sys::spa_hook_list = std::mem::zeroed();
            sys::spa_hook_list_isolate(
                ptr::addr_of_mut!((*st).hooks),
                &mut save,
                listener,
                events as *const c_void,
                data,
            );
            emit_node_info(st, NODE_INFO_ALL);
            emit_all_port_info(st, PORT_INFO_ALL);
            sys::spa_hook_list_join(ptr::addr_of_mut!((*st).hooks), &mut save);
        }
        0
    })
}

unsafe extern "C" fn node_set_callbacks(
    _object: *mut c_void,
    _callbacks: *const sys::spa_node_callbacks,
    _data: *mut c_void,
) -> c_int {
    // Never a driver and never asynchronous: the ready/reuse callbacks are not needed.
    0
}

unsafe extern "C" fn node_sync(object: *mut c_void, seq: c_int) -> c_int {
    guard(-EIO, || {
        let st = object as *mut State;
        if st.is_null() {
            return -EINVAL;
        }
        // SAFETY: live State; emission with a null result as spa_node_emit_result does for sync.
        unsafe {
            for_each_listener(st, |ev, data| {
                if let Some(f) = (*ev).result {
                    f(data, seq, 0, 0, ptr::null());
                }
            });
        }
        0
    })
}

unsafe extern "C" fn node_enum_params(
    object: *mut c_void,
    seq: c_int,
    id: u32,
    start: u32,
    num: u32,
    filter: *const sys::spa_pod,
) -> c_int {
    guard(-EIO, || {
        let st = object as *mut State;
        if st.is_null() || num == 0 {
            return -EINVAL;
        }
        // SAFETY: live State; the Vec of values is built before any emission.
        unsafe {
            let values = match id {
                sys::SPA_PARAM_PropInfo => (*st)
                    .main
                    .param_info()
                    .iter()
                    .map(params::prop_info)
                    .collect(),
                sys::SPA_PARAM_Props => vec![params::props(&(*st).main.param_values())],
                _ => return -ENOENT,
            };
            emit_params(st, seq, id, start, num, filter, values)
        }
    })
}

unsafe extern "C" fn node_set_param(
    object: *mut c_void,
    id: u32,
    _flags: u32,
    param: *const sys::spa_pod,
) -> c_int {
    guard(-EIO, || {
        let st = object as *mut State;
        if st.is_null() {
            return -EINVAL;
        }
        if id != sys::SPA_PARAM_Props {
            return -ENOENT;
        }
        // SAFETY: live State and a valid pod from the host; no reference is held across the
        // data-loop invoke or the emission.
        unsafe {
            let Some(v) = pod_bytes(param).and_then(|b| params::from_bytes(&b)) else {
                log(st, sys::SPA_LOG_LEVEL_WARN, "Props: unreadable pod ignored");
                return -EINVAL;
            };
            let pairs = match params::parse_props(&v) {
                Ok(p) => p,
                Err(_) => {
                    log(
                        st,
                        sys::SPA_LOG_LEVEL_WARN,
                        "Props: not a Props object, ignored",
                    );
                    return -EINVAL;
                }
            };
            if pairs.is_empty() {
                return 0;
            }
            let update = (*st).main.set_params(pairs);
            for line in &update.ignored {
                log(st, sys::SPA_LOG_LEVEL_WARN, line);
            }
            for c in update.controls {
                send_to_rt(st, DataMsg::Control(c));
            }
            emit_props_changed(st);
        }
        0
    })
}

unsafe extern "C" fn node_set_io(
    object: *mut c_void,
    id: u32,
    data: *mut c_void,
    _size: usize,
) -> c_int {
    guard(-EIO, || {
        let st = object as *mut State;
        if st.is_null() {
            return -EINVAL;
        }
        // SAFETY: live State; the pointer is handed to the data loop, which alone reads it.
        unsafe {
            match id {
                sys::SPA_IO_Position => {
                    send_to_rt(st, DataMsg::Position(data as *mut sys::spa_io_position))
                }
                sys::SPA_IO_Clock => {}
                _ => return -ENOENT,
            }
        }
        0
    })
}

unsafe extern "C" fn node_send_command(
    object: *mut c_void,
    command: *const sys::spa_command,
) -> c_int {
    guard(-EIO, || {
        if object.is_null() || command.is_null() {
            return -EINVAL;
        }
        // SAFETY: `command` is a valid command pod from the host.
        let cmd = unsafe { (*command).body.body.id };
        match cmd {
            sys::SPA_NODE_COMMAND_Start
            | sys::SPA_NODE_COMMAND_Pause
            | sys::SPA_NODE_COMMAND_Suspend
            | sys::SPA_NODE_COMMAND_Flush
            | sys::SPA_NODE_COMMAND_ParamBegin
            | sys::SPA_NODE_COMMAND_ParamEnd => 0,
            _ => -ENOTSUP,
        }
    })
}

unsafe extern "C" fn node_add_port(
    _o: *mut c_void,
    _d: sys::spa_direction,
    _p: u32,
    _props: *const sys::spa_dict,
) -> c_int {
    -ENOTSUP
}

unsafe extern "C" fn node_remove_port(_o: *mut c_void, _d: sys::spa_direction, _p: u32) -> c_int {
    -ENOTSUP
}

/// The port's index if the node has this port.
///
/// # Safety
/// `st` is live.
unsafe fn port_ok(st: *mut State, direction: sys::spa_direction, port_id: u32) -> Option<usize> {
    // SAFETY: live State.
    let (dir, n) = unsafe { ((*st).main.direction(), (*st).ports.len()) };
    let want = match dir {
        Direction::Input => sys::SPA_DIRECTION_INPUT,
        Direction::Output => sys::SPA_DIRECTION_OUTPUT,
    };
    (direction == want && (port_id as usize) < n).then_some(port_id as usize)
}

unsafe extern "C" fn node_port_enum_params(
    object: *mut c_void,
    seq: c_int,
    direction: sys::spa_direction,
    port_id: u32,
    id: u32,
    start: u32,
    num: u32,
    filter: *const sys::spa_pod,
) -> c_int {
    guard(-EIO, || {
        let st = object as *mut State;
        if st.is_null() || num == 0 {
            return -EINVAL;
        }
        // SAFETY: live State; values built before emission.
        unsafe {
            let Some(port) = port_ok(st, direction, port_id) else {
                return -EINVAL;
            };
            let (ch, rate) = ((*st).main.channels(), (*st).main.rate());
            let have = (&(*st).ports)[port].have_format;
            let dsp = (*st).layout == PortLayout::Dsp;
            let values = match id {
                sys::SPA_PARAM_EnumFormat if dsp => vec![params::dsp_enum_format()],
                sys::SPA_PARAM_EnumFormat => vec![params::enum_format(ch, rate)],
                sys::SPA_PARAM_Format if have && dsp => vec![params::dsp_format()],
                sys::SPA_PARAM_Format if have => vec![params::format(ch, rate)],
                sys::SPA_PARAM_Buffers if have => vec![params::buffers(if dsp { 1 } else { ch })],
                sys::SPA_PARAM_IO => vec![params::io_buffers(std::mem::size_of::<
                    sys::spa_io_buffers,
                >())],
                sys::SPA_PARAM_Format | sys::SPA_PARAM_Buffers | sys::SPA_PARAM_Meta => Vec::new(),
                _ => return -ENOENT,
            };
            emit_params(st, seq, id, start, num, filter, values)
        }
    })
}

unsafe extern "C" fn node_port_set_param(
    object: *mut c_void,
    direction: sys::spa_direction,
    port_id: u32,
    id: u32,
    _flags: u32,
    param: *const sys::spa_pod,
) -> c_int {
    guard(-EIO, || {
        let st = object as *mut State;
        if st.is_null() {
            return -EINVAL;
        }
        // SAFETY: live State; valid pod; emission without held references.
        unsafe {
            let Some(port) = port_ok(st, direction, port_id) else {
                return -EINVAL;
            };
            match id {
                sys::SPA_PARAM_Format => {}
                sys::SPA_PARAM_Latency | sys::SPA_PARAM_Tag => return 0,
                _ => return -ENOENT,
            }
            if param.is_null() {
                (&mut (*st).ports)[port].have_format = false;
                send_to_rt(
                    st,
                    DataMsg::Buffers(port, [ptr::null_mut(); MAX_BUFFERS], 0),
                );
            } else {
                let parsed = parse_format(param).ok_or_else(|| "unreadable format pod".to_string());
                // A DSP port has no rate of its own: it runs at the graph's.
                let checked = match (*st).layout {
                    PortLayout::Dsp => parsed
                        .and_then(|f| params::check_dsp_format(&f))
                        .map(|()| (*st).main.rate()),
                    PortLayout::Planar => {
                        parsed.and_then(|f| params::check_raw_format(&f, (*st).main.channels()))
                    }
                };
                match checked {
                    Ok(rate) if rate == (*st).main.rate() => {
                        (&mut (*st).ports)[port].have_format = true
                    }
                    Ok(rate) => {
                        log(
                            st,
                            sys::SPA_LOG_LEVEL_ERROR,
                            &format!(
                                "Format: rate {rate} is not the node's {}",
                                (*st).main.rate()
                            ),
                        );
                        return -EINVAL;
                    }
                    Err(e) => {
                        log(
                            st,
                            sys::SPA_LOG_LEVEL_ERROR,
                            &format!("Format rejected: {e}"),
                        );
                        return -EINVAL;
                    }
                }
            }
            let ps = &mut (&mut (*st).ports)[port];
            let have = ps.have_format;
            ps.params[3].flags = if have {
                sys::SPA_PARAM_INFO_READWRITE
            } else {
                sys::SPA_PARAM_INFO_WRITE
            };
            ps.params[4].flags = if have { sys::SPA_PARAM_INFO_READ } else { 0 };
            emit_port_info(st, port, u64::from(sys::SPA_PORT_CHANGE_MASK_PARAMS));
        }
        0
    })
}

unsafe extern "C" fn node_port_use_buffers(
    object: *mut c_void,
    direction: sys::spa_direction,
    port_id: u32,
    _flags: u32,
    buffers: *mut *mut sys::spa_buffer,
    n_buffers: u32,
) -> c_int {
    guard(-EIO, || {
        let st = object as *mut State;
        if st.is_null() {
            return -EINVAL;
        }
        // SAFETY: live State; `buffers` holds `n_buffers` valid buffer pointers that stay valid
        // until the next use_buffers call, which also goes through the data loop.
        unsafe {
            let Some(port) = port_ok(st, direction, port_id) else {
                return -EINVAL;
            };
            let n = n_buffers as usize;
            if n > MAX_BUFFERS {
                return -ENOSPC;
            }
            if n > 0 && !(&(*st).ports)[port].have_format {
                return -EIO;
            }
            let mut arr = [ptr::null_mut(); MAX_BUFFERS];
            for (i, slot) in arr.iter_mut().enumerate().take(n) {
                let b = *buffers.add(i);
                if b.is_null() || (*b).datas.is_null() || (*b).n_datas == 0 {
                    return -EINVAL;
                }
                *slot = b;
            }
            send_to_rt(st, DataMsg::Buffers(port, arr, n));
        }
        0
    })
}

unsafe extern "C" fn node_port_set_io(
    object: *mut c_void,
    direction: sys::spa_direction,
    port_id: u32,
    id: u32,
    data: *mut c_void,
    _size: usize,
) -> c_int {
    guard(-EIO, || {
        let st = object as *mut State;
        if st.is_null() {
            return -EINVAL;
        }
        // SAFETY: live State; the IO pointers go to the data loop, which alone uses them.
        unsafe {
            let Some(port) = port_ok(st, direction, port_id) else {
                return -EINVAL;
            };
            match id {
                sys::SPA_IO_Buffers => {
                    send_to_rt(st, DataMsg::Io(port, data as *mut sys::spa_io_buffers))
                }
                sys::SPA_IO_RateMatch => {
                    send_to_rt(st, DataMsg::RateMatch(data as *mut sys::spa_io_rate_match))
                }
                _ => return -ENOENT,
            }
        }
        0
    })
}

unsafe extern "C" fn node_port_reuse_buffer(
    object: *mut c_void,
    port_id: u32,
    buffer_id: u32,
) -> c_int {
    guard(-EIO, || {
        let st = object as *mut State;
        if st.is_null() {
            return -EINVAL;
        }
        // SAFETY: called on the data loop, where Rt lives.
        let rt = unsafe { &mut *(*st).rt };
        if port_id as usize >= rt.n_ports {
            return -EINVAL;
        }
        recycle(rt, port_id as usize, buffer_id);
        0
    })
}

fn recycle(rt: &mut Rt, port: usize, id: u32) {
    if rt.direction != Direction::Output {
        return;
    }
    let Some(p) = rt.ports.get_mut(port) else {
        return;
    };
    if (id as usize) < p.n_buffers && p.n_free < MAX_BUFFERS {
        if p.free[..p.n_free].contains(&id) {
            return;
        }
        p.free[p.n_free] = id;
        p.n_free += 1;
    }
}

// ---------------------------------------------------------------------------------------------
// process(): data loop, real time. No allocation, lock, syscall or log below this line.

unsafe extern "C" fn node_process(object: *mut c_void) -> c_int {
    guard(-EIO, || {
        let st = object as *mut State;
        if st.is_null() {
            return -EINVAL;
        }
        // SAFETY: `rt` is set in init and freed only in clear, after the node left the graph;
        // the data loop is its only user.
        let rt = unsafe { &mut *(*st).rt };
        // SAFETY: the IO and buffer pointers were handed over by the host through set_io /
        // use_buffers on this thread and stay valid until replaced the same way.
        unsafe {
            match rt.direction {
                Direction::Input => process_input(rt),
                Direction::Output => process_output(rt),
            }
        }
    })
}

/// # Safety
/// Data loop; `rt`'s pointers valid as set by the host.
unsafe fn cycle_of(rt: &Rt) -> Cycle {
    if rt.position.is_null() {
        return Cycle {
            rate: rt.rate,
            ..Cycle::default()
        };
    }
    // SAFETY: the position area is valid while set.
    let c = unsafe { &(*rt.position).clock };
    Cycle {
        position: c.position,
        nsec: c.nsec,
        quantum: c.duration.min(u32::MAX as u64) as u32,
        rate: rt.rate,
    }
}

/// # Safety
/// Data loop; `d` is a valid `spa_data` of a buffer we were given.
unsafe fn plane<'a>(d: *const sys::spa_data, max_samples: usize) -> &'a mut [f32] {
    // SAFETY: per the contract; offset/size are clamped to maxsize and the pointer must be
    // non-null and 4-aligned before a slice is made.
    unsafe {
        let d = &*d;
        if d.data.is_null() || d.chunk.is_null() {
            return &mut [];
        }
        let max = d.maxsize as usize;
        let off = ((*d.chunk).offset as usize).min(max);
        let size = ((*d.chunk).size as usize).min(max - off);
        let p = (d.data as *mut u8).add(off);
        if !(p as usize).is_multiple_of(std::mem::align_of::<f32>()) {
            return &mut [];
        }
        std::slice::from_raw_parts_mut(p as *mut f32, (size / 4).min(max_samples))
    }
}

/// # Safety
/// See [`node_process`].
unsafe fn process_input(rt: &mut Rt) -> c_int {
    // SAFETY: valid IO areas and buffers (see node_process).
    unsafe {
        match rt.layout {
            PortLayout::Planar => process_input_planar(rt),
            PortLayout::Dsp => process_input_dsp(rt),
        }
    }
}

/// One port, one plane per channel (under the adapter).
///
/// # Safety
/// See [`node_process`].
unsafe fn process_input_planar(rt: &mut Rt) -> c_int {
    let port = &rt.ports[0];
    if port.io.is_null() {
        return -EIO;
    }
    // SAFETY: valid IO area and buffers (see node_process).
    unsafe {
        let io = &mut *port.io;
        if io.status == sys::SPA_STATUS_HAVE_DATA as i32 && (io.buffer_id as usize) < port.n_buffers
        {
            let b = &*port.buffers[io.buffer_id as usize];
            let mut planes: [&[f32]; MAX_CH] = [&[]; MAX_CH];
            let n = (b.n_datas as usize).min(rt.channels).min(MAX_CH);
            for (c, p) in planes.iter_mut().enumerate().take(n) {
                *p = plane(b.datas.add(c), params::MAX_QUANTUM as usize);
            }
            let cycle = cycle_of(rt);
            rt.side.process_input(&planes[..n], &cycle);
        }
        io.status = sys::SPA_STATUS_NEED_DATA as i32;
    }
    sys::SPA_STATUS_HAVE_DATA as c_int
}

/// One mono port per channel (created bare). A port without data this cycle (not linked, or
/// its peer had nothing) reads as a cycle of silence.
///
/// # Safety
/// See [`node_process`].
unsafe fn process_input_dsp(rt: &mut Rt) -> c_int {
    // SAFETY: see node_process.
    let cycle = unsafe { cycle_of(rt) };
    let quantum = if cycle.quantum > 0 {
        (cycle.quantum as usize).min(ZEROS.len())
    } else {
        1024
    };
    let mut planes: [&[f32]; MAX_CH] = [&[]; MAX_CH];
    let n = rt.n_ports.min(MAX_CH);
    let mut any = false;
    // SAFETY: valid IO areas and buffers (see node_process).
    unsafe {
        for (port, p) in rt.ports.iter().zip(planes.iter_mut()).take(n) {
            *p = &ZEROS[..quantum];
            if port.io.is_null() {
                continue;
            }
            let io = &mut *port.io;
            if io.status == sys::SPA_STATUS_HAVE_DATA as i32
                && (io.buffer_id as usize) < port.n_buffers
            {
                let b = &*port.buffers[io.buffer_id as usize];
                if b.n_datas > 0 {
                    // One cycle is `duration` samples: a peer that drives itself (a null sink
                    // outside the hardware's group) hands over whole 8192-sample buffers.
                    *p = plane(b.datas, quantum);
                    any = true;
                }
            }
            io.status = sys::SPA_STATUS_NEED_DATA as i32;
        }
    }
    if any {
        rt.side.process_input(&planes[..n], &cycle);
    }
    sys::SPA_STATUS_HAVE_DATA as c_int
}

/// # Safety
/// See [`node_process`].
unsafe fn process_output(rt: &mut Rt) -> c_int {
    // The generator is the only output node and has one channel, so one port in either layout.
    if rt.ports[0].io.is_null() {
        return -EIO;
    }
    // SAFETY: valid IO area and buffers (see node_process).
    unsafe {
        let io = &mut *rt.ports[0].io;
        if io.status == sys::SPA_STATUS_HAVE_DATA as i32 {
            return sys::SPA_STATUS_HAVE_DATA as c_int;
        }
        if io.buffer_id != sys::SPA_ID_INVALID {
            recycle(rt, 0, io.buffer_id);
            io.buffer_id = sys::SPA_ID_INVALID;
        }
        let port = &mut rt.ports[0];
        if port.n_free == 0 {
            return -EPIPE_STATUS;
        }
        port.n_free -= 1;
        let id = port.free[port.n_free];
        let b = &*port.buffers[id as usize];
        let d = &mut *b.datas;
        let cycle = cycle_of(rt);
        let mut want = if cycle.quantum > 0 {
            cycle.quantum as usize
        } else {
            1024
        };
        if !rt.rate_match.is_null() && (*rt.rate_match).size > 0 {
            want = (*rt.rate_match).size as usize;
        }
        let n = want
            .min(d.maxsize as usize / 4)
            .min(params::MAX_QUANTUM as usize);
        if d.data.is_null() || d.chunk.is_null() || !(d.data as usize).is_multiple_of(4) {
            recycle(rt, 0, id);
            return -EIO;
        }
        let out = std::slice::from_raw_parts_mut(d.data as *mut f32, n);
        rt.side.process_output(out, &cycle);
        (*d.chunk).offset = 0;
        (*d.chunk).size = (n * 4) as u32;
        (*d.chunk).stride = 4;
        io.buffer_id = id;
        io.status = sys::SPA_STATUS_HAVE_DATA as i32;
    }
    sys::SPA_STATUS_HAVE_DATA as c_int
}

/// `-EPIPE`: out of buffers (as PipeWire's own sources report it).
const EPIPE_STATUS: c_int = 32;

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    /// Counts allocations made on a thread while its flag is up (the "data loop" of a test).
    struct Counting;
    thread_local!(static COUNTING: Cell<bool> = const { Cell::new(false) });
    // Per thread: tests run in parallel.
    thread_local!(static ALLOCS: Cell<usize> = const { Cell::new(0) });

    // SAFETY: forwards to the system allocator unchanged; the counter has no effect on memory.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            if COUNTING.with(|c| c.get()) {
                ALLOCS.with(|a| a.set(a.get() + 1));
                if std::env::var_os("MUGGE_ALLOC_TRACE").is_some() {
                    COUNTING.with(|c| c.set(false));
                    eprintln!("{}", std::backtrace::Backtrace::force_capture());
                    COUNTING.with(|c| c.set(true));
                }
            }
            // SAFETY: same contract as ours.
            unsafe { System.alloc(l) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            if COUNTING.with(|c| c.get()) {
                ALLOCS.with(|a| a.set(a.get() + 1));
            }
            // SAFETY: same contract as ours.
            unsafe { System.dealloc(p, l) }
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
            if COUNTING.with(|c| c.get()) {
                ALLOCS.with(|a| a.set(a.get() + 1));
            }
            // SAFETY: same contract as ours.
            unsafe { System.realloc(p, l, n) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    /// Counts the allocations `f` makes on this thread.
    fn allocations(f: impl FnOnce()) -> usize {
        let before = ALLOCS.with(Cell::get);
        COUNTING.with(|c| c.set(true));
        f();
        COUNTING.with(|c| c.set(false));
        ALLOCS.with(Cell::get) - before
    }

    /// One port of the fake host: its planes (one per data block), buffer and IO area.
    struct FakePort {
        planes: Vec<Vec<f32>>,
        chunks: Vec<sys::spa_chunk>,
        _datas: Vec<sys::spa_data>,
        buffer: Box<sys::spa_buffer>,
        io: Box<sys::spa_io_buffers>,
    }

    impl FakePort {
        fn new(blocks: usize) -> FakePort {
            let mut planes: Vec<Vec<f32>> = (0..blocks).map(|_| vec![0.0f32; 1024]).collect();
            let mut chunks: Vec<sys::spa_chunk> = (0..blocks)
                .map(|_| sys::spa_chunk {
                    offset: 0,
                    size: 4096,
                    stride: 4,
                    flags: 0,
                })
                .collect();
            let mut datas: Vec<sys::spa_data> = (0..blocks)
                .map(|c| sys::spa_data {
                    type_: sys::SPA_DATA_MemPtr,
                    flags: 0,
                    fd: -1,
                    mapoffset: 0,
                    maxsize: 4096,
                    data: planes[c].as_mut_ptr() as *mut c_void,
                    chunk: &mut chunks[c],
                })
                .collect();
            let buffer = Box::new(sys::spa_buffer {
                n_metas: 0,
                n_datas: blocks as u32,
                metas: ptr::null_mut(),
                datas: datas.as_mut_ptr(),
            });
            FakePort {
                planes,
                chunks,
                _datas: datas,
                buffer,
                io: Box::new(sys::spa_io_buffers {
                    status: 0,
                    buffer_id: sys::SPA_ID_INVALID,
                }),
            }
        }
    }

    /// A node driven by a fake host: no loops (messages apply directly), our own buffers and IO.
    /// With `mugge.ports=dsp` in the properties it has one mono port per channel, else one port
    /// of `channels` planes (as the adapter drives it).
    struct FakeHost {
        _mem: Vec<u64>,
        handle: *mut sys::spa_handle,
        node: *mut sys::spa_node,
        dsp: bool,
        ports: Vec<FakePort>,
        pos: Box<sys::spa_io_position>,
    }

    impl FakeHost {
        fn new(kind: usize, props: &[(&CStr, &CStr)], channels: usize) -> FakeHost {
            let f = &FACTORIES[kind].0;
            let dsp = props
                .iter()
                .any(|(k, v)| *k == c"mugge.ports" && *v == c"dsp");
            // SAFETY: test host following the factory contract.
            unsafe {
                let size = get_size(f, ptr::null());
                let mut mem = vec![0u64; size / 8 + 1];
                let handle = mem.as_mut_ptr() as *mut sys::spa_handle;
                let items: Vec<sys::spa_dict_item> = props
                    .iter()
                    .map(|(k, v)| sys::spa_dict_item {
                        key: k.as_ptr(),
                        value: v.as_ptr(),
                    })
                    .collect();
                let dict = sys::spa_dict {
                    flags: 0,
                    n_items: items.len() as u32,
                    items: items.as_ptr(),
                };
                assert_eq!((f.init.unwrap())(f, handle, &dict, ptr::null(), 0), 0);
                let mut node: *mut c_void = ptr::null_mut();
                let ty = sys::SPA_TYPE_INTERFACE_Node.as_ptr() as *const c_char;
                assert_eq!(((*handle).get_interface.unwrap())(handle, ty, &mut node), 0);
                let ports = if dsp {
                    (0..channels).map(|_| FakePort::new(1)).collect()
                } else {
                    vec![FakePort::new(channels)]
                };
                let mut h = FakeHost {
                    _mem: mem,
                    handle,
                    node: node as *mut sys::spa_node,
                    dsp,
                    ports,
                    pos: Box::new(std::mem::zeroed()),
                };
                h.pos.clock.duration = 1024;
                h.pos.clock.rate = sys::spa_fraction {
                    num: 1,
                    denom: 48000,
                };
                h.setup(channels as u32);
                h
            }
        }

        /// Channel `c`'s samples.
        fn plane(&mut self, c: usize) -> &mut Vec<f32> {
            if self.dsp {
                &mut self.ports[c].planes[0]
            } else {
                &mut self.ports[0].planes[c]
            }
        }

        fn methods(&self) -> (sys::spa_node_methods, *mut c_void) {
            // SAFETY: the node interface set up by init.
            unsafe {
                let cb = &(*self.node).iface.cb;
                (*(cb.funcs as *const sys::spa_node_methods), cb.data)
            }
        }

        fn dir(&self) -> sys::spa_direction {
            // SAFETY: state pointer valid while the handle lives.
            match unsafe { (*(*(self.handle as *mut Handle)).state).main.direction() } {
                Direction::Input => sys::SPA_DIRECTION_INPUT,
                Direction::Output => sys::SPA_DIRECTION_OUTPUT,
            }
        }

        fn setup(&mut self, channels: u32) {
            let (m, o) = self.methods();
            let dir = self.dir();
            let fmt = if self.dsp {
                params::to_bytes(&params::dsp_format()).unwrap()
            } else {
                params::to_bytes(&params::format(channels, 48000)).unwrap()
            };
            let mut store = vec![0u64; fmt.len().div_ceil(8)];
            // SAFETY: test host; all pointers outlive the node (owned by self).
            unsafe {
                ptr::copy_nonoverlapping(fmt.as_ptr(), store.as_mut_ptr() as *mut u8, fmt.len());
                let pod = store.as_ptr() as *const sys::spa_pod;
                for (i, port) in self.ports.iter_mut().enumerate() {
                    let i = i as u32;
                    assert_eq!(
                        (m.port_set_param.unwrap())(o, dir, i, sys::SPA_PARAM_Format, 0, pod),
                        0
                    );
                    let mut bufs = [&mut *port.buffer as *mut sys::spa_buffer];
                    assert_eq!(
                        (m.port_use_buffers.unwrap())(o, dir, i, 0, bufs.as_mut_ptr(), 1),
                        0
                    );
                    let io = &mut *port.io as *mut sys::spa_io_buffers as *mut c_void;
                    assert_eq!(
                        (m.port_set_io.unwrap())(o, dir, i, sys::SPA_IO_Buffers, io, 8),
                        0
                    );
                }
                let pos = &mut *self.pos as *mut sys::spa_io_position as *mut c_void;
                assert_eq!((m.set_io.unwrap())(o, sys::SPA_IO_Position, pos, 0), 0);
            }
        }

        /// One graph cycle as the graph would run it.
        fn cycle(&mut self) -> c_int {
            let (m, o) = self.methods();
            let input = self.dir() == sys::SPA_DIRECTION_INPUT;
            for p in &mut self.ports {
                if input {
                    p.io.status = sys::SPA_STATUS_HAVE_DATA as i32;
                    p.io.buffer_id = 0;
                } else {
                    p.io.status = sys::SPA_STATUS_NEED_DATA as i32;
                }
            }
            self.pos.clock.position += 1024;
            self.pos.clock.nsec += 21_333_333;
            // SAFETY: the node's process with its IO areas set up.
            unsafe { (m.process.unwrap())(o) }
        }

        fn set_props(&mut self, pairs: &[(&str, params::Param)]) {
            let (m, o) = self.methods();
            let bytes = params::to_bytes(&params::props(pairs)).unwrap();
            let mut store = vec![0u64; bytes.len().div_ceil(8)];
            // SAFETY: a valid pod in aligned storage.
            unsafe {
                ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    store.as_mut_ptr() as *mut u8,
                    bytes.len(),
                );
                assert_eq!(
                    (m.set_param.unwrap())(
                        o,
                        sys::SPA_PARAM_Props,
                        0,
                        store.as_ptr() as *const sys::spa_pod
                    ),
                    0
                );
            }
        }

        fn poll(&self) -> Vec<(&'static str, params::Param)> {
            // SAFETY: on_timer with our live state, as the main loop would call it.
            unsafe {
                let st = (*(self.handle as *mut Handle)).state;
                on_timer(st as *mut c_void, 1);
                (*st).main.param_values()
            }
        }
    }

    impl Drop for FakeHost {
        fn drop(&mut self) {
            // SAFETY: the handle was initialised by init.
            unsafe { ((*self.handle).clear.unwrap())(self.handle) };
        }
    }

    fn sock(name: &str) -> CString {
        CString::new(
            std::env::temp_dir()
                .join(format!("mugge-ffi-test-{}-{name}.sock", std::process::id()))
                .to_str()
                .unwrap(),
        )
        .unwrap()
    }

    /// The layouts a node can be created with: planar (under the adapter) and DSP (bare).
    fn layout_props(dsp: bool) -> Vec<(&'static CStr, &'static CStr)> {
        if dsp {
            vec![(c"mugge.ports", c"dsp")]
        } else {
            Vec::new()
        }
    }

    fn meter_process_path(dsp: bool) {
        let path = sock(if dsp { "meter-dsp" } else { "meter" });
        let mut props = vec![
            (c"audio.channels", c"3"),
            (c"meter.socket", path.as_c_str()),
            (c"node.name", c"m"),
        ];
        props.extend(layout_props(dsp));
        let mut h = FakeHost::new(0, &props, 3);
        h.set_props(&[("meter.ppm", params::Param::Str("II".into()))]);
        // Channel 2 only: the reading must land on channel 2 (index 1) in either layout.
        for (i, s) in h.plane(1).iter_mut().enumerate() {
            *s = 0.5 * (i as f32 * 0.1).sin();
        }
        let mut n = 0;
        for _ in 0..50 {
            n += allocations(|| {
                for _ in 0..10 {
                    assert_eq!(h.cycle(), sys::SPA_STATUS_HAVE_DATA as c_int);
                }
            });
            // The main loop's timer drains the snapshots meanwhile.
            h.poll();
        }
        assert_eq!(n, 0, "allocations on the process path");
        for p in &h.ports {
            assert_eq!(p.io.status, sys::SPA_STATUS_NEED_DATA as i32);
        }
        let v = h.poll();
        let seq = v.iter().find(|(k, _)| *k == "meter.seq").unwrap();
        assert_eq!(
            seq.1,
            params::Param::Long(250),
            "one snapshot every 2 cycles at q1024"
        );
        let Some((_, params::Param::Floats(peak))) = v.iter().find(|(k, _)| *k == "meter.rms")
        else {
            panic!("no meter.rms");
        };
        assert!(peak[0] < -150.0 && peak[2] < -150.0, "{peak:?}");
        assert!((peak[1] - (-9.03)).abs() < 0.1, "{peak:?}");
    }

    #[test]
    fn meter_process_path_does_not_allocate() {
        meter_process_path(false);
    }

    #[test]
    fn meter_dsp_ports_process_path_does_not_allocate() {
        meter_process_path(true);
    }

    #[test]
    fn dsp_port_without_data_reads_as_silence_and_others_still_count() {
        let path = sock("meter-dsp-idle");
        let mut props = vec![
            (c"audio.channels", c"2"),
            (c"meter.socket", path.as_c_str()),
            (c"node.name", c"m2"),
        ];
        props.extend(layout_props(true));
        let mut h = FakeHost::new(0, &props, 2);
        h.plane(0).fill(0.25);
        h.plane(1).fill(1.0);
        let (m, o) = h.methods();
        for _ in 0..40 {
            h.ports[0].io.status = sys::SPA_STATUS_HAVE_DATA as i32;
            h.ports[0].io.buffer_id = 0;
            // Channel 2's peer produced nothing this cycle (its stale buffer must not be read).
            h.ports[1].io.status = sys::SPA_STATUS_NEED_DATA as i32;
            h.ports[1].io.buffer_id = 0;
            h.pos.clock.position += 1024;
            // SAFETY: the node's process with its IO areas set up.
            let r = unsafe { (m.process.unwrap())(o) };
            assert_eq!(r, sys::SPA_STATUS_HAVE_DATA as c_int);
            h.poll();
        }
        let v = h.poll();
        let Some((_, params::Param::Floats(peak))) = v.iter().find(|(k, _)| *k == "meter.peak")
        else {
            panic!("no meter.peak");
        };
        assert!(peak[1] < -150.0, "{peak:?}");
        assert!((peak[0] - (-12.04)).abs() < 0.05, "{peak:?}");
    }

    #[test]
    fn dsp_port_reads_one_cycle_even_from_a_longer_buffer() {
        // A peer that drives itself (a null sink outside the hardware's group) hands over
        // buffers longer than the cycle: only `duration` samples belong to it.
        let path = sock("meter-dsp-long");
        let mut props = vec![
            (c"audio.channels", c"1"),
            (c"meter.socket", path.as_c_str()),
            (c"node.name", c"m1"),
        ];
        props.extend(layout_props(true));
        let mut h = FakeHost::new(0, &props, 1);
        h.pos.clock.duration = 256;
        h.plane(0).fill(1.0);
        h.plane(0)[..256].fill(0.25);
        let (m, o) = h.methods();
        for _ in 0..40 {
            h.ports[0].io.status = sys::SPA_STATUS_HAVE_DATA as i32;
            h.ports[0].io.buffer_id = 0;
            h.pos.clock.position += 256;
            // SAFETY: the node's process with its IO areas set up.
            let r = unsafe { (m.process.unwrap())(o) };
            assert_eq!(r, sys::SPA_STATUS_HAVE_DATA as c_int);
            h.poll();
        }
        let v = h.poll();
        let Some((_, params::Param::Floats(peak))) = v.iter().find(|(k, _)| *k == "meter.peak")
        else {
            panic!("no meter.peak");
        };
        assert!((peak[0] - (-12.04)).abs() < 0.05, "{peak:?}");
    }

    fn tap_process_path(dsp: bool) {
        let path = sock(if dsp { "tap-dsp" } else { "tap" });
        let mut props = vec![
            (c"audio.channels", c"3"),
            (c"tap.socket", path.as_c_str()),
            (c"node.name", c"t"),
        ];
        props.extend(layout_props(dsp));
        let mut h = FakeHost::new(1, &props, 3);
        let n = allocations(|| {
            // More cycles than the ring holds: the overflow path is covered too.
            for _ in 0..400 {
                h.cycle();
            }
        });
        assert_eq!(n, 0, "allocations on the process path");
    }

    #[test]
    fn tap_process_path_does_not_allocate() {
        tap_process_path(false);
    }

    #[test]
    fn tap_dsp_ports_process_path_does_not_allocate() {
        tap_process_path(true);
    }

    fn siggen_process_path(dsp: bool) {
        let mut props = vec![(c"node.name", c"g")];
        props.extend(layout_props(dsp));
        let mut h = FakeHost::new(2, &props, 1);
        h.set_props(&[
            ("siggen.signal", params::Param::Str("pink".into())),
            ("siggen.level", params::Param::Float(12.0)),
            ("siggen.running", params::Param::Bool(true)),
        ]);
        let mut peak = 0f32;
        let n = allocations(|| {
            for _ in 0..300 {
                assert_eq!(h.cycle(), sys::SPA_STATUS_HAVE_DATA as c_int);
                assert_eq!(h.ports[0].io.buffer_id, 0);
                for s in h.plane(0).iter() {
                    peak = peak.max(s.abs());
                }
            }
        });
        assert_eq!(n, 0, "allocations on the process path");
        assert!(
            peak <= mugge_dsp::siggen::MAX_PEAK_LIN && peak > 0.05,
            "peak {peak}"
        );
        assert_eq!(h.ports[0].chunks[0].size, 4096);
    }

    #[test]
    fn siggen_process_path_does_not_allocate_and_respects_the_cap() {
        siggen_process_path(false);
    }

    #[test]
    fn siggen_dsp_port_process_path_does_not_allocate_and_respects_the_cap() {
        siggen_process_path(true);
    }

    #[test]
    fn dsp_ports_are_named_one_based_with_aux_positions() {
        let p = node::dsp_port_props(Direction::Input, 0);
        assert!(p.contains(&("port.name".into(), "input_1".into())));
        assert!(p.contains(&("audio.channel".into(), "AUX0".into())));
        assert!(p.contains(&("format.dsp".into(), node::DSP_FORMAT_NAME.into())));
        let p = node::dsp_port_props(Direction::Output, 23);
        assert!(p.contains(&("port.name".into(), "output_24".into())));
        assert!(p.contains(&("audio.channel".into(), "AUX23".into())));
    }

    #[test]
    fn garbage_props_and_formats_are_rejected_without_harm() {
        let mut h = FakeHost::new(2, &[(c"node.name", c"g2")], 1);
        let (m, o) = h.methods();
        let mut x = 7u32;
        for i in 0..3000 {
            let mut words = [0u32; 32];
            for w in words.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *w = x;
            }
            // A plausible header so the parsers get past the first check.
            words[0] = 120;
            words[1] = sys::SPA_TYPE_Object;
            words[2] = if i % 2 == 0 {
                sys::SPA_TYPE_OBJECT_Props
            } else {
                sys::SPA_TYPE_OBJECT_Format
            };
            let pod = words.as_ptr() as *const sys::spa_pod;
            // SAFETY: the pod claims 120 body bytes and 128 - 8 are there.
            unsafe {
                (m.set_param.unwrap())(o, sys::SPA_PARAM_Props, 0, pod);
                (m.port_set_param.unwrap())(
                    o,
                    sys::SPA_DIRECTION_OUTPUT,
                    0,
                    sys::SPA_PARAM_Format,
                    0,
                    pod,
                );
            }
        }
        // Still a working node after the abuse (formats may be unset by a garbage pod: set again).
        h.setup(1);
        assert_eq!(h.cycle(), sys::SPA_STATUS_HAVE_DATA as c_int);
        let _ = h.poll();
    }

    #[test]
    fn bad_creation_properties_fail_init_with_einval() {
        let path = sock("bad");
        let cases: [(usize, &CStr, &CStr); 6] = [
            (0, c"mugge.ports", c"stereo"),
            (0, c"audio.channels", c"40"),
            (0, c"audio.channels", c"two"),
            (0, c"meter.ppm", c"III"),
            (1, c"tap.buffer-ms", c"-5"),
            (2, c"audio.channels", c"2"),
        ];
        for (kind, k, v) in cases {
            let f = &FACTORIES[kind].0;
            let mut mem = vec![0u64; std::mem::size_of::<Handle>() / 8 + 1];
            let items = [
                sys::spa_dict_item {
                    key: k.as_ptr(),
                    value: v.as_ptr(),
                },
                sys::spa_dict_item {
                    key: c"meter.socket".as_ptr(),
                    value: path.as_ptr(),
                },
                sys::spa_dict_item {
                    key: c"tap.socket".as_ptr(),
                    value: path.as_ptr(),
                },
            ];
            let dict = sys::spa_dict {
                flags: 0,
                n_items: 3,
                items: items.as_ptr(),
            };
            // SAFETY: test host following the factory contract; init fails before using `mem`.
            let r = unsafe {
                (f.init.unwrap())(
                    f,
                    mem.as_mut_ptr() as *mut sys::spa_handle,
                    &dict,
                    ptr::null(),
                    0,
                )
            };
            assert_eq!(r, -EINVAL, "{k:?}={v:?}");
        }
    }

    #[test]
    fn factory_enum_lists_three_factories() {
        let mut names = Vec::new();
        let mut idx = 0u32;
        loop {
            let mut f: *const sys::spa_handle_factory = ptr::null();
            // SAFETY: valid out-pointers.
            let r = unsafe { spa_handle_factory_enum(&mut f, &mut idx) };
            if r != 1 {
                break;
            }
            // SAFETY: the factory and its name are static.
            names.push(
                unsafe { CStr::from_ptr((*f).name) }
                    .to_str()
                    .unwrap()
                    .to_string(),
            );
        }
        assert_eq!(names, ["mugge.meter", "mugge.tap", "mugge.siggen"]);
    }

    #[test]
    fn handle_starts_with_spa_handle_and_fits_host_alignment() {
        assert_eq!(std::mem::offset_of!(Handle, handle), 0);
        assert!(std::mem::align_of::<Handle>() <= 8);
    }
}
